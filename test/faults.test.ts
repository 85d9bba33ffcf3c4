/**
 * Faults, with the server as a real process: kill -9 under load (both engines), PostgreSQL down under
 * load, Redis restarted empty. Nothing decided is lost and nothing is oversold.
 */
import { afterEach, expect, test } from "bun:test"
import { Database } from "bun:sqlite"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { isolated, scalar, startPostgres, startRedis, until } from "./support/services"
import { request, type ServerProcess } from "./support/process"
import { tally } from "./support/harness"
import { saleViolations, type Query } from "./support/invariants"
import { drainedHealth, fixtures, oneSale, shoppers, type Result } from "./support/load"

const { cleanups, server } = fixtures()

type Log = { checkouts: Result[]; purchases: Result[]; failed: number }

/** Shoppers buy out a sale of 1,000 items; the server is killed with -9 mid-load and restarted with the same config. */
async function killUnderLoad(config: Record<string, string>): Promise<{ log: Log; restarted: ServerProcess }> {
  let s = await server(config)
  const log: Log = { checkouts: [], purchases: [], failed: 0 }
  const running = shoppers(() => s.base, 1000, log).run(64)
  await until("some load", () => log.purchases.length > 300)
  expect(await s.stop("SIGKILL")).not.toBe(0)
  s = await server(config)
  await running
  expect(log.failed).toBeGreaterThan(0)
  return { log, restarted: s }
}

/** What the store kept matches what the clients saw: all 1,000 items sold once, every answer a row, no row without a request. */
async function expectKept(query: Query, log: Log) {
  const violations = await saleViolations(query, { userLimit: 1000, answers: log, soldOut: 1000, attempts: { unanswered: { checkouts: log.failed, purchases: log.failed } } })
  expect(violations).toEqual([])
}

test("kill -9 under load, then restart: every answered decision is kept, the stock sells exactly once", async () => {
  const env = await isolated()
  cleanups.push(() => env.close())
  const { log, restarted } = await killUnderLoad({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "1000", USER_LIMIT: "1000", HOLD_SECONDS: "1", ...oneSale })
  await drainedHealth(restarted.base)
  await expectKept((text) => env.sql.unsafe(text) as Promise<Record<string, any>[]>, log)
}, 60_000)

test("PostgreSQL stopped under load: the sale goes on, health says degraded, and the backlog drains when it returns", async () => {
  const pg = await startPostgres()
  cleanups.push(() => pg.stop())
  const env = await isolated({ databaseUrl: pg.url })
  cleanups.push(() => env.close())
  const s = await server({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "100000", USER_LIMIT: "100000", ...oneSale })
  const log = { checkouts: [] as Result[], purchases: [] as Result[], failed: 0 }
  const load = shoppers(() => s.base, 100_000, log)
  const running = load.run(32)
  await until("some load", () => log.checkouts.length > 200)
  await pg.halt()
  const during = log.checkouts.length
  await until("load while PostgreSQL is down", () => log.checkouts.length > during + 1000).catch((error) => {
    throw new Error(`${error.message}; server output:\n${s.output().slice(-3000)}`)
  })
  const health = await request(s.base, "GET", "/health")
  expect(health.status).toBe(200)
  const backlog = health.body.checks.ledger.backlog_entries
  expect(health.body).toMatchObject({ status: "degraded", checks: { postgres: { status: "down" } } })
  expect(backlog).toBeGreaterThan(0)
  await pg.start()
  load.stop()
  await running
  expect(log.failed).toBe(0)
  expect(tally(log.checkouts).unavailable).toBeUndefined()

  await drainedHealth(s.base)
  expect(await saleViolations((text) => env.sql.unsafe(text) as Promise<Record<string, any>[]>, { userLimit: 100000, answers: log, attempts: "exact" })).toEqual([])
  expect(await scalar(env.sql`select count(*)::int as n from purchases`)).toBe(log.purchases.filter((p) => p.status === 200).length)
}, 60_000)

test("Redis restarted empty: the sale is rebuilt from PostgreSQL before the server answers again", async () => {
  const redis = await startRedis()
  cleanups.push(() => redis.stop())
  const env = await isolated({ redisUrl: redis.url })
  cleanups.push(() => env.close())
  const s = await server({ REDIS_URL: redis.url, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "50", USER_LIMIT: "3", ...oneSale })
  const buy = async (user: string, id: number) => {
    const held = await request(s.base, "POST", `/checkout?user_id=${user}&id=${id}`)
    return request(s.base, "POST", `/purchase?code=${held.body.code}`)
  }
  expect((await buy("ann", 1)).status).toBe(200)
  expect((await buy("ann", 2)).status).toBe(200)
  const held = await request(s.base, "POST", "/checkout?user_id=bob&id=3")
  expect(held.status).toBe(200)
  await request(s.base, "POST", "/checkout?user_id=cat&id=3")
  const before = (await request(s.base, "GET", "/status")).body
  await drainedHealth(s.base)

  await redis.kill()
  const down = await request(s.base, "POST", "/checkout?user_id=dan&id=1")
  expect(down.status).toBe(503)
  expect(down.headers.get("retry-after")).toMatch(/^\d+$/)
  expect(await request(s.base, "GET", "/health")).toMatchObject({ status: 503, body: { status: "down", checks: { redis: { status: "down" } } } })
  await redis.start()

  // The very first answers after the restart already know what was sold and held.
  const sold = await until("Redis to be reachable again", async () => {
    const r = await request(s.base, "POST", "/checkout?user_id=dan&id=1")
    return r.status === 503 ? undefined : r
  })
  expect(sold!.body.error).toBe("item_sold")
  expect((await request(s.base, "POST", "/checkout?user_id=dan&id=3")).body.error).toBe("item_reserved")
  expect((await request(s.base, "POST", "/checkout?user_id=ann&id=4")).status).toBe(200)
  expect((await request(s.base, "POST", "/checkout?user_id=ann&id=5")).body.error).toBe("user_limit")
  expect(await request(s.base, "POST", `/purchase?code=${held.body.code}`)).toMatchObject({ status: 200, body: { user_id: "bob", item: { id: 3 } } })
  const after = (await request(s.base, "GET", "/status")).body
  expect(after).toMatchObject({
    sale_id: before.sale_id,
    items_sold: 3,
    items_reserved: 1,
    checkouts: { accepted: before.checkouts.accepted + 1, rejected: before.checkouts.rejected + 3 },
    purchases: { accepted: 3, rejected: 0 },
  })
  expect(s.output()).toContain("rebuilt from PostgreSQL (2 units sold, 1 live holds)")
}, 60_000)

test("embedded: kill -9 under load, then restart: every answer the clients saw is kept, nothing is oversold", async () => {
  const dir = mkdtempSync(join(tmpdir(), "fs-embedded-kill-"))
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }))
  const { log, restarted } = await killUnderLoad({ DATA_DIR: dir, REDIS_URL: "", DATABASE_URL: "", SALE_ITEMS: "1000", USER_LIMIT: "1000", HOLD_SECONDS: "1", ...oneSale })
  expect(await restarted.stop("SIGTERM")).toBe(0)
  const db = new Database(join(dir, "flashsale.sqlite"), { readonly: true })
  cleanups.push(async () => db.close())
  await expectKept(async (text) => db.query(text).all() as Record<string, any>[], log)
}, 60_000)
