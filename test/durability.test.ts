/**
 * Durable before answered (Redis + PostgreSQL engine): a success is in PostgreSQL when it is answered,
 * so a Redis that comes back empty loses nothing that was answered; PostgreSQL itself refuses a second
 * sale of an item; a PostgreSQL that stops answering neither stalls the sale nor its graceful stop.
 */
import { expect, test } from "bun:test"
import postgres from "postgres"
import { writeRecords } from "../src/postgres/store"
import type { PurchaseRecord } from "../src/sale/records"
import Redis from "ioredis"
import { partsOf, saleKeys, saleRegistryKey } from "../src/redis/keys"
import { harness } from "./support/harness"
import { request } from "./support/process"
import { isolated, scalar, startPostgres, startRedis, until } from "./support/services"
import { drainedHealth, fixtures, oneSale, shoppers, type Result } from "./support/load"
import { saleViolations } from "./support/invariants"

const { cleanups, server } = fixtures()

test("a granted hold and a purchase are in PostgreSQL by the time they are answered", async () => {
  const h = await harness({}, "redis")
  cleanups.push(() => h.close())
  const held = await h.checkout("ann", 7)
  expect(held.status).toBe(200)
  expect(await h.count(`select count(*) as n from checkout_attempts where code = '${held.body.code}' and outcome = 'reserved'`)).toBe(1)
  expect((await h.purchase(held.body.code)).status).toBe(200)
  expect(await h.count(`select count(*) as n from purchases where code = '${held.body.code}' and item_id = 7`)).toBe(1)
})

test("PostgreSQL refuses a second sale of an item: the purchase is not a sale, a replay of the first is harmless", async () => {
  const env = await isolated()
  cleanups.push(() => env.close())
  const sale = (code: string, eventId: string): PurchaseRecord => ({ kind: "purchase", saleId: 9, eventId, code, outcome: "purchased", userId: code, itemId: 3, unit: 1, at: 1_800_000_000_000 })
  expect([...(await writeRecords(env.sql, [sale("first", "1-0")]))]).toEqual([])
  expect([...(await writeRecords(env.sql, [sale("first", "1-0")]))]).toEqual([])
  expect([...(await writeRecords(env.sql, [sale("second", "2-0")]))]).toEqual(["second"])
  expect([...(await env.sql`select code from purchases`)]).toEqual([{ code: "first" }])
  expect([...(await env.sql`select code, outcome from purchase_attempts order by event_id`)]).toEqual([
    { code: "first", outcome: "purchased" },
    { code: "second", outcome: "item_sold" },
  ])
})

for (const shards of [1, 6]) {
  const split = shards === 1 ? "" : ", sales split into 6 shards"
  test(`Redis restarted empty twice under load on two instances${split}: every answered hold and sale survives, no item sells twice`, async () => {
    const redis = await startRedis()
    cleanups.push(() => redis.stop())
    const env = await isolated({ redisUrl: redis.url })
    cleanups.push(() => env.close())
    // A generous commit wait: PostgreSQL is up throughout, so every success must be committed before it is answered.
    const config = { REDIS_URL: redis.url, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "3000", USER_LIMIT: "100000", HOLD_SECONDS: "600", COMMIT_WAIT_MS: "2000", SALE_SHARDS: String(shards), ...oneSale }
    const servers = [await server(config), await server(config)]
    const log = { checkouts: [] as Result[], purchases: [] as Result[], failed: 0 }
    let turn = 0
    const load = shoppers(() => servers[turn++ % 2]!.base, 3000, log)
    const running = load.run(32)
    for (const round of [1, 2]) {
      const before = log.purchases.filter((p) => p.status === 200).length
      await until(`sales before restart ${round}`, () => log.purchases.filter((p) => p.status === 200).length > before + 150)
      await redis.kill()
      await redis.start()
    }
    const after = log.purchases.filter((p) => p.status === 200).length
    await until("sales after the restarts", () => log.purchases.filter((p) => p.status === 200).length > after + 150)
    load.stop()
    await running
    await drainedHealth(servers[0]!.base)

    const query = (text: string) => env.sql.unsafe(text) as Promise<Record<string, any>[]>
    expect(await saleViolations(query, { userLimit: 100000, answers: log })).toEqual([])
    // Every hold answered and not bought is still live, so it still buys.
    const kept = new Set((await env.sql`select code from purchases`).map((r) => r.code as string))
    const unbought = new Set(log.checkouts.filter((c) => c.status === 200 && !kept.has(c.body.code)).map((c) => c.body.code as string))
    for (const code of unbought) expect({ code, status: (await request(servers[0]!.base, "POST", `/purchase?code=${code}`)).status }).toEqual({ code, status: 200 })
    await drainedHealth(servers[0]!.base)
    const status = (await request(servers[1]!.base, "GET", "/status")).body
    expect(await saleViolations(query, { userLimit: 100000, liveSold: new Map([[status.sale_id, status.items_sold]]) })).toEqual([])
  }, 90_000)
}

test("one shard of a split sale lost under load (a failover that lost its writes): it is rebuilt from PostgreSQL and the other shards, nothing answered is lost, no item sells twice, no user goes over the limit", async () => {
  const redis = await startRedis()
  cleanups.push(() => redis.stop())
  const env = await isolated({ redisUrl: redis.url })
  cleanups.push(() => env.close())
  const config = { REDIS_URL: redis.url, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "3000", USER_LIMIT: "6", HOLD_SECONDS: "600", COMMIT_WAIT_MS: "2000", SALE_SHARDS: "6", ...oneSale }
  const servers = [await server(config), await server(config)]
  const log = { checkouts: [] as Result[], purchases: [] as Result[], failed: 0 }
  let turn = 0
  const load = shoppers(() => servers[turn++ % 2]!.base, 3000, log)
  // 64 users of at most 6 each: by the end most of them are at the limit, so it is tested across the loss.
  const running = load.run(64)
  const sold = () => log.purchases.filter((p) => p.status === 200).length
  await until("sales before the loss", () => sold() > 150)
  const saleId = (await request(servers[0]!.base, "GET", "/status")).body.sale_id
  const client = new Redis(redis.url)
  // Shard 2's keys vanish, as on a master that failed over before its replica had them; its journal goes too.
  await client.del(...saleKeys(partsOf(saleId, 6)[2]!))
  client.disconnect()
  const before = sold()
  await until("sales after the loss", () => sold() > before + 150)
  load.stop()
  await running
  await drainedHealth(servers[0]!.base)

  const status = (await request(servers[1]!.base, "GET", "/status")).body
  // Every user's purchases plus the holds still live stay within USER_LIMIT, and every answered sale is kept.
  const query = (text: string) => env.sql.unsafe(text) as Promise<Record<string, any>[]>
  expect(await saleViolations(query, { userLimit: 6, answers: log, liveSold: new Map([[status.sale_id, status.items_sold]]) })).toEqual([])
  // Some user reached the limit, so it was tested across the loss.
  const counted = await env.sql`select user_id, count(*)::int as n from (
      select user_id from purchases
      union all select user_id from checkout_attempts a where outcome = 'reserved' and expires_at > now() and not exists (select 1 from purchases p where p.code = a.code)
    ) t group by user_id order by n desc limit 1`
  expect(counted[0]!.n).toBe(6)
  expect(log.checkouts.some((c) => c.body.error === "user_limit")).toBe(true)
  expect(log.purchases.filter((p) => p.status >= 500 && p.status !== 503)).toEqual([])
}, 90_000)

test("PostgreSQL that stops answering: successes are answered from the journal, health degrades, stop is bounded, and nothing is lost", async () => {
  const pg = await startPostgres()
  cleanups.push(async () => (pg.signal("SIGCONT"), pg.stop()))
  const env = await isolated({ databaseUrl: pg.url })
  cleanups.push(() => env.close())
  const config = { REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "1000", USER_LIMIT: "1000", ...oneSale }
  const s = await server(config)
  expect((await request(s.base, "POST", "/checkout?user_id=ann&id=1")).status).toBe(200)

  pg.signal("SIGSTOP")
  const answered: Result[] = []
  for (let item = 2; item <= 30; item++) {
    const held = await request(s.base, "POST", `/checkout?user_id=bob&id=${item}`)
    answered.push(held, await request(s.base, "POST", `/purchase?code=${held.body.code}`))
  }
  expect(answered.filter((r) => r.status !== 200)).toEqual([])
  const health = await until("health to say degraded", async () => {
    const h = await request(s.base, "GET", "/health")
    return h.body.status === "degraded" ? h : undefined
  })
  expect(health).toMatchObject({ status: 200, body: { checks: { postgres: { status: "down" } } } })

  const stopping = performance.now()
  expect(await s.stop("SIGTERM")).toBe(0)
  expect(performance.now() - stopping).toBeLessThan(10_000)

  pg.signal("SIGCONT")
  const next = await server(config)
  await drainedHealth(next.base)
  expect(await scalar(env.sql`select count(*)::int as n from purchases where user_id = 'bob'`)).toBe(29)
  expect(await scalar(env.sql`select count(*)::int as n from checkout_attempts`)).toBe(30)
}, 90_000)

test("a commit that was never answered is recovered from the journal by another instance", async () => {
  const env = await isolated()
  cleanups.push(() => env.close())
  const admin = postgres(env.databaseUrl, { max: 1, onnotice: () => {} })
  cleanups.push(() => admin.end())
  const config = { REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, SALE_ITEMS: "1000", USER_LIMIT: "1000", ...oneSale }
  const a = await server(config)
  const b = await server(config)
  // Lock the purchases table so that a's commit cannot finish, then kill a while it waits.
  const locked = admin.begin(async (tx) => {
    await tx`lock table purchases in access exclusive mode`
    const held = await request(a.base, "POST", "/checkout?user_id=ann&id=5")
    const bought = await request(a.base, "POST", `/purchase?code=${held.body.code}`)
    expect(bought.status).toBe(200)
    await a.stop("SIGKILL")
  })
  await locked
  await until("b to recover a's purchase", async () => (await scalar(env.sql`select count(*)::int as n from purchases where item_id = 5`)) === 1)
  await drainedHealth(b.base)
  expect(b.output()).toContain("that no running instance had committed")
}, 60_000)

test("a background loop that keeps failing turns /health degraded and says why", async () => {
  const env = await isolated()
  cleanups.push(() => env.close())
  const s = await server({ REDIS_URL: env.redisUrl, DATABASE_URL: env.databaseUrl, ...oneSale })
  await drainedHealth(s.base)
  // Someone overwrote the sales registry with a string: every loop that reads it now fails.
  await env.redis.set(saleRegistryKey, "not a set")
  const health = await until("health to report the failing loops", async () => {
    const h = await request(s.base, "GET", "/health")
    return h.body.checks.background.journal_recovery && h.body.checks.background.maintenance ? h : undefined
  })
  expect(health).toMatchObject({ status: 200, body: { status: "degraded", checks: { background: { status: "failing", journal_recovery: expect.stringContaining("WRONGTYPE"), maintenance: expect.stringContaining("WRONGTYPE") }, ledger: { status: "unknown" } } } })
}, 30_000)
