/** The PostgreSQL schema (sale/schema.ts). Every statement is idempotent; an advisory lock keeps concurrent starts from racing. */
import type { Sql } from "postgres"
import { ddl } from "../sale/schema"

const statements = ddl("postgres")
const migrated = new WeakMap<Sql, Promise<void>>()

/** Creates or migrates the schema once per connection pool; a failed attempt is retried on the next call. */
export function ensureSchema(sql: Sql): Promise<void> {
  let done = migrated.get(sql)
  if (!done) {
    done = sql
      .begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(727274)`
        for (const statement of statements) await tx.unsafe(statement)
      })
      .then(() => {})
    done.catch(() => migrated.delete(sql))
    migrated.set(sql, done)
  }
  return done
}
