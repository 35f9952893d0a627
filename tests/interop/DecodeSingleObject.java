// Decodes Avro single-object encoded records with Apache Avro's own Java decoder
// (org.apache.avro.message.BinaryMessageDecoder): a standard third-party reader of what the
// extractor writes without a schema registry. Run as a source file (Java 11+):
//
//   java -cp '.tools/avro-<version>/libs/*' tests/interop/DecodeSingleObject.java SCHEMAS RECORDS
//
// SCHEMAS: one writer schema (JSON) per line, as the schema topic holds them; each is parsed
// with Schema.Parser and added to the decoder, which keys it by its own CRC-64-AVRO
// fingerprint. RECORDS: lines `PARTITION<TAB>OFFSET<TAB>HEX` of raw record values.
//
// Prints, UTF-8, one line per schema and per record:
//   schema<TAB>FINGERPRINT (16 hex digits, as Avro computes it)
//   record<TAB>PARTITION<TAB>OFFSET<TAB>JSON (GenericData's JSON rendering of the record)
// A record whose fingerprint no given schema has, or that does not decode, ends the run
// with exit code 1 and the reason on stderr.

import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;

public class DecodeSingleObject {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: DecodeSingleObject SCHEMAS RECORDS");
            System.exit(2);
        }
        PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), false, StandardCharsets.UTF_8);
        // No reader schema: each record is read with its own writer schema.
        BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), null);
        for (String line : Files.readAllLines(Path.of(args[0]), StandardCharsets.UTF_8)) {
            if (line.isBlank()) {
                continue;
            }
            // A parser per schema: successive versions share the record's name.
            Schema schema = new Schema.Parser().parse(line);
            decoder.addSchema(schema);
            out.printf("schema\t%016x%n", SchemaNormalization.parsingFingerprint64(schema));
        }
        List<String> records = Files.readAllLines(Path.of(args[1]), StandardCharsets.UTF_8);
        for (String line : records) {
            if (line.isBlank()) {
                continue;
            }
            String[] parts = line.split("\t");
            byte[] value = HexFormat.of().parseHex(parts[2]);
            GenericRecord record;
            try {
                record = decoder.decode(value);
            } catch (Exception e) {
                out.flush();
                System.err.printf("partition %s offset %s: %s%n", parts[0], parts[1], e);
                System.exit(1);
                return;
            }
            out.printf("record\t%s\t%s\t%s%n", parts[0], parts[1], GenericData.get().toString(record));
        }
        out.flush();
    }
}
