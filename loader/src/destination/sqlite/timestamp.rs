//! Timestamps as the SQLite destination stores them: fixed-width UTC text, formatted
//! without allocating.

/// A timestamp (microseconds since the Unix epoch, UTC) as stored in SQLite:
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always six fraction digits, so text order is time order
/// for years 0000–9999 (years outside that range get more digits or a `-`).
pub fn timestamp_text(micros: i64) -> String {
    TimestampBuf::default()
        .format(micros)
        .iter()
        .map(|&byte| char::from(byte))
        .collect()
}

/// Formats a timestamp on the stack (the bind path allocates nothing).
#[derive(Default)]
pub(super) struct TimestampBuf {
    bytes: [u8; 32],
    len: usize,
}

impl TimestampBuf {
    /// The ASCII text of the timestamp.
    pub(super) fn format(&mut self, micros: i64) -> &[u8] {
        let seconds = micros.div_euclid(1_000_000);
        let fraction = micros.rem_euclid(1_000_000).unsigned_abs();
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400).unsigned_abs();
        let (year, month, day) = civil_from_days(days);

        self.len = 0;
        if year < 0 {
            self.push(b'-');
        }
        self.push_number(year.unsigned_abs(), 4);
        self.push(b'-');
        self.push_number(month, 2);
        self.push(b'-');
        self.push_number(day, 2);
        self.push(b'T');
        self.push_number(second_of_day / 3600, 2);
        self.push(b':');
        self.push_number(second_of_day / 60 % 60, 2);
        self.push(b':');
        self.push_number(second_of_day % 60, 2);
        self.push(b'.');
        self.push_number(fraction, 6);
        self.push(b'Z');
        &self.bytes[..self.len]
    }

    fn push(&mut self, byte: u8) {
        // At most 30 bytes: the year of i64 micros has at most 6 digits plus a sign.
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    /// `number` in decimal, zero-padded to at least `width` digits.
    fn push_number(&mut self, mut number: u64, width: usize) {
        let mut digits = [0_u8; 20];
        let mut count = 0;
        while number > 0 || count < width {
            digits[count] = b'0' + (number % 10) as u8;
            number /= 10;
            count += 1;
        }
        for &digit in digits[..count].iter().rev() {
            self.push(digit);
        }
    }
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1).unsigned_abs();
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    }
    .unsigned_abs();
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
