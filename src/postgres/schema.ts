/**
 * The PostgreSQL schema (sale/schema.ts), created or migrated in place at start: tables this version adds,
 * columns and keys that changed since an earlier version wrote the store. Every statement is idempotent; an
 * advisory lock keeps concurrent starts from racing.
 */
import type { Sql } from "postgres"
import { ddl, postgresMigration } from "../sale/schema"

const [creates, indexes] = (() => {
  const all = ddl("postgres")
  return [all.filter((s) => s.startsWith("create table")), all.filter((s) => !s.startsWith("create table"))]
})()
const statements = [...creates, ...postgresMigration(), ...indexes]
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
