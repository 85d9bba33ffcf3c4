/** The PostgreSQL schema. Every statement is idempotent; an advisory lock keeps concurrent starts from racing. */
import type { Sql } from "postgres"

const statements = [
  `create table if not exists checkout_attempts (
    sale_id bigint not null,
    event_id text not null,
    user_id text not null,
    item_id int not null,
    outcome text not null,
    code text,
    expires_at timestamptz,
    created_at timestamptz not null,
    primary key (sale_id, event_id)
  )`,
  `create index if not exists checkout_attempts_holds on checkout_attempts (sale_id, expires_at) where outcome = 'reserved'`,
  `create table if not exists purchases (
    sale_id bigint not null,
    item_id int not null,
    user_id text not null,
    code text not null unique,
    purchased_at timestamptz not null,
    primary key (sale_id, item_id)
  )`,
  `create table if not exists purchase_attempts (
    sale_id bigint not null,
    event_id text not null,
    code text not null,
    outcome text not null,
    user_id text,
    item_id int,
    created_at timestamptz not null,
    primary key (sale_id, event_id)
  )`,
]

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
