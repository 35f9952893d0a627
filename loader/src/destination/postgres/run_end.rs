//! A replace run's end on PostgreSQL: recorded per partition under an advisory lock; the
//! last partition's writer swaps the staging table (and child tables) in.

use super::*;
use crate::destination::scd2::{self, Scd2Sql};
use crate::destination::swap::{SwapPlan, TableSwap};

/// The full (logical) names of the tables of `schema` that have a column `column`. A table
/// whose name was shortened (see [`identifier_key`]) has its full name as its comment
/// (see [`note_full_name`]); a comment counts only when it shortens to the table's name.
pub(super) fn tables_by_full_name(
    client: &mut impl GenericClient,
    schema: &str,
    column: &str,
) -> Result<Vec<String>, postgres::Error> {
    let rows = client.query(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class') \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND EXISTS \
          (SELECT 1 FROM pg_attribute a \
           WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped)",
        &[&schema, &column],
    )?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0)?;
            let comment: Option<String> = row.try_get(1)?;
            Ok(match comment {
                Some(full)
                    if full.len() > POSTGRES_MAX_IDENTIFIER && identifier_key(&full) == name =>
                {
                    full
                }
                _ => name,
            })
        })
        .collect()
}

/// Keeps the full name of a table whose name was shortened as its comment, so that
/// [`tables_by_full_name`] finds it (a child table by its parent's name).
pub(super) fn note_full_name(
    tx: &mut Transaction<'_>,
    qualified: &str,
    table: &str,
) -> Result<(), postgres::Error> {
    if table.len() <= POSTGRES_MAX_IDENTIFIER {
        return Ok(());
    }
    let mut sql = format!("COMMENT ON TABLE {qualified} IS ");
    push_literal(&mut sql, table);
    tx.batch_execute(&sql)
}

/// dlt's scd2 at the end of a run: the table of versions (created, or given the staging
/// table's new columns) takes the run's records (see [`scd2`]); the staging table goes.
fn scd2_merge(
    tx: &mut Transaction<'_>,
    schema: &str,
    end: &RunEnd,
    staged: bool,
    staging: &str,
    target: &str,
) -> Result<(), postgres::Error> {
    let Some(options) = end.scd2.as_deref() else {
        return Ok(());
    };
    let (time, active) = scd2::literals(
        end,
        options,
        |t| format!("'{t}'::timestamptz"),
        "NULL::timestamptz",
    );
    if !staged {
        let sql = Scd2Sql {
            target,
            staging: "",
            content: Vec::new(),
            options,
            same: "IS NOT DISTINCT FROM",
            time,
            active,
            quote: push_ident,
        };
        return sql
            .retire_all()
            .map_or(Ok(()), |sql| tx.batch_execute(&sql));
    }
    let staging = qualified(schema, staging);
    let columns_of =
        |tx: &mut Transaction<'_>, table: &str| -> Result<Vec<(String, String)>, postgres::Error> {
            tx.query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
                &[&table],
            )?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
        };
    let staged = columns_of(tx, &staging)?;
    let mut existing: Vec<String> = columns_of(tx, target)?.into_iter().map(|c| c.0).collect();
    if existing.is_empty() {
        let mut sql = format!("CREATE TABLE {target} (");
        for (name, kind) in &staged {
            push_ident(&mut sql, name);
            sql.push(' ');
            sql.push_str(kind);
            sql.push_str(", ");
        }
        push_ident(&mut sql, &options.valid_from);
        sql.push_str(" TIMESTAMPTZ, ");
        push_ident(&mut sql, &options.valid_to);
        sql.push_str(" TIMESTAMPTZ)");
        tx.batch_execute(&sql)?;
        existing = staged.iter().map(|c| c.0.clone()).collect();
    } else {
        let mut missing: Vec<(String, String)> = staged
            .iter()
            .filter(|(name, _)| !existing.contains(name))
            .cloned()
            .collect();
        for validity in [&options.valid_from, &options.valid_to] {
            if !existing.iter().any(|n| n == validity) {
                missing.push((validity.to_owned(), "TIMESTAMPTZ".to_owned()));
            }
        }
        for (name, kind) in missing {
            let mut sql = format!("ALTER TABLE {target} ADD COLUMN ");
            push_ident(&mut sql, &name);
            sql.push(' ');
            sql.push_str(&kind);
            tx.batch_execute(&sql)?;
            existing.push(name);
        }
    }
    let content = existing
        .into_iter()
        .filter(|c| !Scd2Sql::is_validity(options, c))
        .map(|c| {
            let in_staging = staged.iter().any(|(s, _)| *s == c);
            (c, in_staging)
        })
        .collect();
    let sql = Scd2Sql {
        target,
        staging: &staging,
        content,
        options,
        same: "IS NOT DISTINCT FROM",
        time,
        active,
        quote: push_ident,
    };
    tx.batch_execute(&sql.retire())?;
    tx.batch_execute(&sql.insert())?;
    tx.batch_execute(&format!("DROP TABLE {staging}"))
}

/// Records that `end`'s partition ended its run; when that completes the run, swaps the
/// run's staging table in as the table (see [`Destination::write_batch`]). Writers of one
/// topic's run ends serialise on an advisory lock, so the last partition's writer sees every
/// other's row and exactly one of them swaps.
pub(super) fn end_run(
    tx: &mut Transaction<'_>,
    schema: &str,
    columns: &mut HashMap<String, HashMap<String, String>>,
    end: &RunEnd,
    stats: &mut BatchStats,
) -> Result<(), DestinationError> {
    let error = |error: postgres::Error| DestinationError::RunEnd {
        topic: end.topic.clone(),
        table: end.table.clone(),
        run: end.run,
        error: db(error),
    };
    let run = end.run_id();
    let runs = qualified(schema, RUNS_TABLE);
    let lock_key = format!("{runs}:{}", end.topic);
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &lock_key],
        )
        .map_err(error)?;
    let exists = |tx: &mut Transaction<'_>, table: &str| -> Result<bool, DestinationError> {
        tx.query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&qualified(schema, table)],
        )
        .and_then(|row| row.try_get(0))
        .map_err(error)
    };
    if !exists(tx, RUNS_TABLE)? {
        let _ = tx
            .execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &runs],
            )
            .map_err(error)?;
        tx.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {runs} (\"topic\" TEXT NOT NULL, \
             \"run_id\" BIGINT NOT NULL, \"partition\" INTEGER NOT NULL, \
             PRIMARY KEY (\"topic\", \"run_id\", \"partition\"))"
        ))
        .map_err(error)?;
    }
    let _ = tx
        .execute(
            &format!(
                "INSERT INTO {runs} (\"topic\", \"run_id\", \"partition\") VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
            ),
            &[&end.topic, &run, &end.partition],
        )
        .map_err(error)?;
    let ended: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM {runs} \
                 WHERE \"topic\" = $1 AND \"run_id\" = $2 AND \"partition\" >= 0"
            ),
            &[&end.topic, &run],
        )
        .and_then(|row| row.try_get(0))
        .map_err(error)?;
    if ended < i64::from(end.partitions) {
        return Ok(());
    }
    let swapped_to: Option<i64> = tx
        .query_one(
            &format!(
                "SELECT max(\"run_id\") FROM {runs} WHERE \"topic\" = $1 AND \"partition\" = -1"
            ),
            &[&end.topic],
        )
        .and_then(|row| row.try_get(0))
        .map_err(error)?;
    let staging = crate::destination::staging_table(&end.table, end.run);
    let target = qualified(schema, &end.table);
    let plan = SwapPlan::new(end, swapped_to);
    // Other writers' DDL on the table waits for this swap (see `ensure_table`).
    let _ = tx
        .execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&LOCK_CLASS, &target],
        )
        .map_err(error)?;
    let swap = {
        let tx = std::cell::RefCell::new(&mut *tx);
        plan.table(
            || exists(&mut tx.borrow_mut(), &staging),
            || exists(&mut tx.borrow_mut(), &end.table),
        )?
    };
    match swap {
        TableSwap::Rename | TableSwap::Empty if end.scd2.is_some() => {
            let staged = swap == TableSwap::Rename;
            scd2_merge(tx, schema, end, staged, &staging, &target).map_err(error)?;
            note_full_name(tx, &target, &end.table).map_err(error)?;
        }
        TableSwap::Rename => {
            let mut sql = format!(
                "DROP TABLE IF EXISTS {target}; ALTER TABLE {} RENAME TO ",
                qualified(schema, &staging)
            );
            push_ident(&mut sql, &end.table);
            tx.batch_execute(&sql).map_err(error)?;
            note_full_name(tx, &target, &end.table).map_err(error)?;
        }
        TableSwap::Empty => {
            tx.batch_execute(&format!("DELETE FROM {target}"))
                .map_err(error)?;
        }
        TableSwap::LaterRunSwapped | TableSwap::Nothing => {}
    }
    if let Some(message) = swap.done_as(end.scd2.is_some(), stats) {
        // The target this line had before the run end moved into its own file.
        tracing::info!(target: "loader::destination::postgres", table = %end.table, run = end.run, "{message}");
    }
    // Child tables follow the swap (see `child_swap`), found by their full names.
    let search = crate::destination::child_search_prefix(&end.table);
    let mut children: Vec<String> = tables_by_full_name(tx, schema, crate::nested::ROOT_ID)
        .map_err(error)?
        .into_iter()
        .filter(|name| name.starts_with(search))
        .collect();
    children.sort();
    let (drops, renames) = plan.children(end, &children);
    for name in &drops {
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", qualified(schema, name)))
            .map_err(error)?;
        let _ = columns.remove(&identifier_key(name));
    }
    for (from, to) in &renames {
        let mut sql = format!("ALTER TABLE {} RENAME TO ", qualified(schema, from));
        push_ident(&mut sql, to);
        tx.batch_execute(&sql).map_err(error)?;
        note_full_name(tx, &qualified(schema, to), to).map_err(error)?;
        let _ = columns.remove(&identifier_key(from));
        let _ = columns.remove(&identifier_key(to));
    }
    // Staging tables of this run (when not swapped in) and of earlier runs are done with.
    let prefix = identifier_key(&staging_prefix(&end.table));
    let names: Vec<String> = tx
        .query(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND left(table_name, length($2)) = $2",
            &[&schema, &prefix],
        )
        .map_err(error)?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(error)?;
    for name in names {
        if plan.obsolete(end, &name) {
            tx.batch_execute(&format!("DROP TABLE {}", qualified(schema, &name)))
                .map_err(error)?;
            stats.runs.dropped += 1;
        }
    }
    let _ = tx
        .execute(
            &format!("DELETE FROM {runs} WHERE \"topic\" = $1 AND \"run_id\" <= $2"),
            &[&end.topic, &run],
        )
        .map_err(error)?;
    let _ = tx
        .execute(
            &format!(
                "INSERT INTO {runs} (\"topic\", \"run_id\", \"partition\") VALUES ($1, $2, -1) \
                 ON CONFLICT DO NOTHING"
            ),
            &[&end.topic, &plan.recorded_run],
        )
        .map_err(error)?;
    // What this process knew about either table is stale now.
    let table_key = identifier_key(&end.table);
    columns.retain(|key, _| {
        *key != table_key && staging_run(&end.table, key).is_none() && !key.starts_with(search)
    });
    Ok(())
}
