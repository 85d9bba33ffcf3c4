/**
 * A store and a Redis written by the build before stock (b6f609d), mid-sale, and this build started on them:
 * PostgreSQL and SQLite are migrated in place with nothing lost, and the sale stays exact. The recordings in
 * test/fixtures/before-units/ were made by running that build (a sale of 20 one-unit items, USER_LIMIT 3, a
 * one-year period), deciding what embedded.json and redis-postgres.json list, then kill -9: the Redis one also
 * with PostgreSQL stopped for its last four decisions, which it answered from its journal and never committed.
 * They are replayed into the current sale: sale ids, codes and times shifted so that they end now.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { Database } from "bun:sqlite"
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { isolated } from "./support/services"
import { request, startServer, type ServerProcess } from "./support/process"

const dir = join(import.meta.dir, "fixtures", "before-units")
const servers: ServerProcess[] = []
const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const s of servers) await s.stop("SIGKILL")
  for (const cleanup of cleanups) await cleanup()
})
const server = async (env: Record<string, string>) => {
  const s = await startServer(env)
  servers.push(s)
  return s
}

type Recording = { recordedAt: number; period: number; config: Record<string, string>; answers: { path: string; status: number; body: any }[]; late?: { path: string; status: number; body: any }[] }

/** Maps the recording's sale ids, codes and times onto the sale open now. */
function shifter(recording: Recording) {
  const period = recording.period * 1000
  const oldSale = Math.floor(recording.recordedAt / period)
  const now = Date.now()
  const newSale = Math.floor(now / period)
  const delta = now - recording.recordedAt
  const sale = (id: number) => id - oldSale + newSale
  const code = (text: string) => text.replace(/^(\d+)\./, (_, id) => `${sale(Number(id))}.`)
  const ms = (value: number) => value + delta
  const time = (iso: string) => new Date(Date.parse(iso) + delta).toISOString()
  return { sale, code, ms, time, oldSale, newSale, config: { ...recording.config, RATE_LIMIT_PER_USER: "0" } }
}

const codeOf = (recording: Recording, path: string) => [...recording.answers, ...(recording.late ?? [])].find((a) => a.path === path)!.body.code as string

describe("Redis and PostgreSQL written by the build before stock", () => {
  const recording = JSON.parse(readFileSync(join(dir, "redis-postgres.json"), "utf8")) as Recording & { redis: Record<string, { type: string; value: any }>; postgres: { tables: Record<string, Record<string, unknown>[]> } }
  let env: Awaited<ReturnType<typeof isolated>>
  let base: string
  let shift: ReturnType<typeof shifter>

  beforeAll(async () => {
    env = await isolated()
    shift = shifter(recording)
    const { sale, code, ms, time } = shift
    // PostgreSQL as that build created it: purchases keyed by (sale_id, item_id), no unit anywhere.
    await env.sql.unsafe(`create table checkout_attempts (sale_id bigint not null, user_id text not null, item_id int not null, outcome text not null, code text, expires_at timestamptz, created_at timestamptz not null, event_id text not null, primary key (sale_id, event_id))`)
    await env.sql.unsafe(`create table purchases (sale_id bigint not null, item_id int not null, user_id text not null, code text not null, purchased_at timestamptz not null, primary key (sale_id, item_id), unique (code))`)
    await env.sql.unsafe(`create table purchase_attempts (sale_id bigint not null, code text not null, outcome text not null, user_id text, item_id int, created_at timestamptz not null, event_id text not null, primary key (sale_id, event_id))`)
    const eventShift = (id: string) => id.replace(/^(\d+)/, (m) => String(ms(Number(m))))
    for (const [table, rows] of Object.entries(recording.postgres.tables)) {
      for (const row of rows) {
        const r: Record<string, unknown> = { ...row, sale_id: sale(Number(row.sale_id)) }
        if (r.code) r.code = code(String(r.code))
        for (const t of ["created_at", "expires_at", "purchased_at"]) if (r[t]) r[t] = time(String(r[t]))
        if (r.event_id) r.event_id = eventShift(String(r.event_id))
        await env.sql`insert into ${env.sql(table)} ${env.sql(r)}`
      }
    }
    // Redis as that build left it: the sale's keys in its layout, and its journal with what PostgreSQL never got.
    const key = (k: string) => k.replace(/\{sale:(\d+)\}/, (_, id) => `{sale:${sale(Number(id))}}`)
    // That build's values: codes "h|item|expires|user" / "p|item|at|user", items "h|expires|user|code" / "s|user|code".
    const value = (k: string, v: string) =>
      k.endsWith(":codes")
        ? v.replace(/^([hp])\|(\d+)\|(\d+)\|(.+)$/, (_, kind, item, t, user) => `${kind}|${item}|${ms(Number(t))}|${user}`)
        : k.endsWith(":items")
          ? v.replace(/^h\|(\d+)\|([^|]+)\|(.+)$/, (_, t, user, c) => `h|${ms(Number(t))}|${user}|${code(c)}`).replace(/^s\|([^|]+)\|(.+)$/, (_, user, c) => `s|${user}|${code(c)}`)
          : v
    for (const [name, { type, value: v }] of Object.entries(recording.redis)) {
      const k = key(name)
      if (type === "hash") {
        const fields = Object.entries(v as Record<string, string>).flatMap(([f, x]) => [/^\d+\./.test(f) ? code(f) : f, f === "next_exp" && x !== "0" ? String(ms(Number(x))) : value(name, x)])
        await env.redis.hset(k, ...fields)
      } else if (type === "zset") {
        const pairs: (string | number)[] = []
        for (let i = 0; i < v.length; i += 2) pairs.push(ms(Number(v[i + 1])), code(v[i]))
        await env.redis.zadd(k, ...pairs)
      } else if (type === "set") await env.redis.sadd(k, ...(v as string[]).map((m) => String(/^\d+$/.test(m) ? sale(Number(m)) : m)))
      else if (type === "string") await env.redis.set(k, v)
      else if (type === "stream") {
        for (const [id, fields] of v as [string, string[]][]) {
          const f = [...fields]
          for (let i = 0; i < f.length; i += 2) {
            if (f[i] === "t") f[i + 1] = String(ms(Number(f[i + 1])))
            if (f[i] === "d") f[i + 1] = f[i + 1]!.split("\n").map((line) => line.split(" ").map((p, j) => (/^\d+\./.test(p) ? code(p) : j === 4 && /^\d{12,}$/.test(p) ? String(ms(Number(p))) : p)).join(" ")).join("\n")
          }
          await env.redis.xadd(k, eventShift(id), ...f)
        }
      }
    }
    const s = await server({ ...shift.config, REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl })
    base = s.base
  }, 60_000)
  afterAll(() => env?.close())

  test("PostgreSQL is migrated in place: units on purchases and attempts, purchases keyed by unit, no row lost", async () => {
    const keys = await env.sql`select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = 'purchases'::regclass and contype = 'p'`
    expect(keys[0]!.def).toBe("PRIMARY KEY (sale_id, item_id, unit)")
    for (const [table, rows] of Object.entries(recording.postgres.tables)) {
      const kept = await env.sql`select count(*)::int as n from ${env.sql(table)} where sale_id = ${shift.newSale}`
      expect({ table, n: kept[0]!.n >= rows.length }).toEqual({ table, n: true })
    }
    expect((await env.sql`select distinct unit from purchases`).map((r) => r.unit)).toEqual([1])
  })

  test("the sale stays exact: a bought code stays used, a live hold stays purchasable, counts and limits survive, the journal's decisions are kept once", async () => {
    const code = (path: string) => shift.code(codeOf(recording, path))
    // Answered 200 by the old build; the last one only from its journal, with PostgreSQL down.
    expect(await request(base, "POST", `/purchase?code=${code("/checkout?user_id=ann&id=1")}`)).toMatchObject({ status: 409, body: { error: "code_used" } })
    expect(await request(base, "POST", `/purchase?code=${code("/checkout?user_id=fay&id=8")}`)).toMatchObject({ status: 409, body: { error: "code_used" } })
    const status = (await request(base, "GET", "/status")).body
    expect(status).toMatchObject({ sale_id: shift.newSale, items_sold: 3, items_reserved: 5 })
    expect(await request(base, "POST", `/purchase?code=${code("/checkout?user_id=bob&id=3")}`)).toMatchObject({ status: 200, body: { user_id: "bob", item: { id: 3 } } })
    expect(await request(base, "POST", `/purchase?code=${code("/checkout?user_id=gus&id=9")}`)).toMatchObject({ status: 200, body: { user_id: "gus", item: { id: 9 } } })
    expect(await request(base, "POST", "/checkout?user_id=dan&id=10")).toMatchObject({ status: 429, body: { error: "user_limit" } })
    expect(await request(base, "POST", "/checkout?user_id=cat&id=8")).toMatchObject({ status: 409, body: { error: "item_sold" } })
    expect((await request(base, "POST", "/checkout?user_id=hal&id=11")).status).toBe(200)
    // Every checkout the old build answered is kept once: the recording's answers plus the one here.
    const answered = [...recording.answers, ...recording.late!].filter((a) => a.path.startsWith("/checkout")).length
    await Bun.sleep(0)
    const rows = async () => (await env.sql`select count(*)::int as n from checkout_attempts where sale_id = ${shift.newSale}`)[0]!.n
    const deadline = Date.now() + 10_000
    while ((await rows()) < answered + 3 && Date.now() < deadline) await Bun.sleep(50)
    expect(await rows()).toBe(answered + 3)
    expect((await env.sql`select count(*)::int as n from purchases where sale_id = ${shift.newSale}`)[0]!.n).toBe(5)
  })
})

describe("an embedded store written by the build before stock", () => {
  const recording = JSON.parse(readFileSync(join(dir, "embedded.json"), "utf8")) as Recording
  let base: string
  let data: string
  let shift: ReturnType<typeof shifter>

  beforeAll(async () => {
    shift = shifter(recording)
    data = mkdtempSync(join(tmpdir(), "fs-upgrade-"))
    cleanups.push(async () => rmSync(data, { recursive: true, force: true }))
    for (const f of ["flashsale.sqlite", "flashsale.sqlite-wal", "flashsale.sqlite-shm"]) if (existsSync(join(dir, `embedded-${f}`))) copyFileSync(join(dir, `embedded-${f}`), join(data, f))
    // Into the sale open now, as the old build would have kept it had it run today.
    const db = new Database(join(data, "flashsale.sqlite"))
    for (const [table, times] of [["checkout_attempts", ["created_at", "expires_at"]], ["purchases", ["purchased_at"]], ["purchase_attempts", ["created_at"]]] as const) {
      const rows = db.query(`select rowid as r, * from ${table}`).all() as Record<string, any>[]
      for (const row of rows) {
        const set = [`sale_id = ${shift.sale(row.sale_id)}`, ...(row.code ? [`code = '${shift.code(row.code)}'`] : []), ...times.filter((t) => row[t]).map((t) => `${t} = '${shift.time(row[t])}'`)]
        db.run(`update ${table} set ${set.join(", ")} where rowid = ${row.r}`)
      }
    }
    db.close()
    const s = await server({ ...shift.config, DATA_DIR: data, REDIS_URL: "", DATABASE_URL: "" })
    base = s.base
  }, 60_000)

  test("SQLite is migrated in place and the sale stays exact: used codes, live holds, limits and counts", async () => {
    const code = (path: string) => shift.code(codeOf(recording, path))
    expect(await request(base, "POST", `/purchase?code=${code("/checkout?user_id=ann&id=2")}`)).toMatchObject({ status: 409, body: { error: "code_used" } })
    expect((await request(base, "GET", "/status")).body).toMatchObject({ sale_id: shift.newSale, items_sold: 2, items_reserved: 4 })
    expect(await request(base, "POST", `/purchase?code=${code("/checkout?user_id=bob&id=3")}`)).toMatchObject({ status: 200, body: { user_id: "bob", item: { id: 3 } } })
    expect(await request(base, "POST", "/checkout?user_id=dan&id=10")).toMatchObject({ status: 429, body: { error: "user_limit" } })
    const db = new Database(join(data, "flashsale.sqlite"), { readonly: true })
    try {
      const columns = db.query("pragma table_info(purchases)").all() as { name: string; pk: number }[]
      expect(columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name)).toEqual(["sale_id", "item_id", "unit"])
      expect((db.query("select count(*) as n from purchases").get() as { n: number }).n).toBe(3)
      expect((db.query("select count(*) as n from checkout_attempts").get() as { n: number }).n).toBe(recording.answers.filter((a) => a.path.startsWith("/checkout")).length + 1)
    } finally {
      db.close()
    }
  })
})
