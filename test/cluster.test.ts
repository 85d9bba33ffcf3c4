/**
 * The Redis engine on a real Redis Cluster (3 masters, 3 replicas), detected from REDIS_URL: two
 * instances seeded from different nodes, one of them a replica, hold the contract under concurrency.
 */
import { afterAll, beforeAll, expect, test } from "bun:test"
import { tally } from "./support/harness"
import { drainedHealth, fixtures, oneSale, shoppers, type Result } from "./support/load"
import { request, type ServerProcess } from "./support/process"
import { isolated, scalar, startRedisCluster, until, type RedisCluster } from "./support/services"

const { server } = fixtures()
let cluster: RedisCluster
let env: Awaited<ReturnType<typeof isolated>>

beforeAll(async () => {
  cluster = await startRedisCluster()
  env = await isolated()
}, 60_000)
afterAll(async () => {
  await env?.close()
  await cluster?.stop()
})

async function twoInstances(items: number, limit: number): Promise<ServerProcess[]> {
  // Each test is a fresh sale: no keys and no rows from the one before.
  await cluster.flush()
  await env.sql`drop table if exists checkout_attempts, purchases, purchase_attempts`
  const config = { DATABASE_URL: env.databaseUrl, SALE_ITEMS: String(items), USER_LIMIT: String(limit), ...oneSale }
  // redis-cli makes the first three nodes masters and the last three their replicas.
  return [await server({ ...config, REDIS_URL: cluster.nodes[0]!.url }), await server({ ...config, REDIS_URL: cluster.nodes[5]!.url })]
}

test("a cluster node in REDIS_URL, master or replica, is detected and health says cluster", async () => {
  const [a, b] = await twoInstances(50, 5)
  for (const s of [a!, b!]) {
    expect(await request(s.base, "GET", "/health")).toMatchObject({ status: 200, body: { status: "ok", checks: { redis: { status: "ok", mode: "cluster" } } } })
    expect(s.output()).toContain("redis cluster")
  }
}, 60_000)

test("on a cluster, one item raced by 40 users across two instances is held once, and its code sells once", async () => {
  const servers = await twoInstances(50, 5)
  const answers = await Promise.all(Array.from({ length: 40 }, (_, i) => request(servers[i % 2]!.base, "POST", `/checkout?user_id=racer${i}&id=1`)))
  expect(tally(answers)).toEqual({ ok: 1, item_reserved: 39 })
  const code = answers.find((a) => a.status === 200)!.body.code
  const buys = await Promise.all(servers.map((s) => request(s.base, "POST", `/purchase?code=${code}`)))
  expect(tally(buys)).toEqual({ ok: 1, code_used: 1 })
}, 60_000)

test("on a cluster, USER_LIMIT counts holds from both instances", async () => {
  const servers = await twoInstances(50, 5)
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => request(servers[i % 2]!.base, "POST", `/checkout?user_id=greedy&id=${10 + i}`)))
  expect(tally(answers)).toEqual({ ok: 5, user_limit: 7 })
}, 60_000)

test("on a cluster, two instances sell out exactly: every item once, every answered sale kept, no 5xx", async () => {
  const servers = await twoInstances(300, 300)
  const log = { checkouts: [] as Result[], purchases: [] as Result[], failed: 0 }
  let turn = 0
  await shoppers(() => servers[turn++ % 2]!.base, 300, log).run(32)
  await drainedHealth(servers[0]!.base)
  expect(log.failed).toBe(0)
  expect([...log.checkouts, ...log.purchases].filter((r) => r.status >= 500)).toEqual([])
  const sold = log.purchases.filter((p) => p.status === 200)
  expect(sold.length).toBe(300)
  expect(await scalar(env.sql`select count(distinct item_id)::int as n from purchases`)).toBe(300)
  const kept = new Map((await env.sql`select item_id, user_id from purchases`).map((r) => [Number(r.item_id), r.user_id]))
  expect(sold.filter((p) => kept.get(p.body.item.id) !== p.body.user_id)).toEqual([])
  for (const s of servers) expect((await request(s.base, "GET", "/status")).body).toMatchObject({ items_sold: 300, sale_status: "sold_out" })
}, 90_000)

test("on a cluster, across sale boundaries on different masters, every decision belongs to the sale its time falls in", async () => {
  await cluster.flush()
  await env.sql`drop table if exists checkout_attempts, purchases, purchase_attempts`
  const config = { DATABASE_URL: env.databaseUrl, SALE_ITEMS: "100000", USER_LIMIT: "100000", SALE_PERIOD_SECONDS: "1" }
  const servers = [await server({ ...config, REDIS_URL: cluster.nodes[1]!.url }), await server({ ...config, REDIS_URL: cluster.nodes[4]!.url })]
  const log = { checkouts: [] as Result[], purchases: [] as Result[], failed: 0 }
  let turn = 0
  const load = shoppers(() => servers[turn++ % 2]!.base, 100_000, log)
  const running = load.run(8)
  const sales = () => new Set(log.checkouts.filter((c) => c.status === 200).map((c) => c.body.sale_id)).size
  await until("decisions in three sales", () => sales() >= 3, 30_000)
  load.stop()
  await running
  await drainedHealth(servers[0]!.base)
  const misplaced = await env.sql`select sale_id, created_at from checkout_attempts where sale_id <> floor(extract(epoch from created_at))::bigint`
  expect([...misplaced]).toEqual([])
  expect(await scalar(env.sql`select count(distinct sale_id)::int as n from checkout_attempts`)).toBeGreaterThanOrEqual(3)
}, 90_000)

/**
 * Two instances under load while `change` reshapes the cluster around the current sale's slot. Checks what every
 * such change must keep: no 5xx but 503, no item answered sold twice, and every answered sale kept for its buyer.
 */
async function topologyChangeUnderLoad(what: string, change: (saleKey: string) => Promise<unknown>) {
  const servers = await twoInstances(2000, 2000)
  const log = { checkouts: [] as Result[], purchases: [] as Result[], failed: 0 }
  let turn = 0
  const load = shoppers(() => servers[turn++ % 2]!.base, 2000, log)
  const running = load.run(16)
  const sold = () => log.purchases.filter((p) => p.status === 200).length
  await until(`sales before the ${what}`, () => sold() > 100)
  const saleId = (await request(servers[0]!.base, "GET", "/status")).body.sale_id
  await change(`{sale:${saleId}}:stats`)
  const before = sold()
  await until(`sales after the ${what}`, () => sold() > before + 100, 30_000)
  load.stop()
  await running
  // While the topology changes the server may answer 503 (Retry-After), never another 5xx.
  expect([...log.checkouts, ...log.purchases].filter((r) => r.status >= 500 && r.status !== 503)).toEqual([])
  const answered = log.purchases.filter((p) => p.status === 200).map((p) => p.body.item.id)
  expect(new Set(answered).size).toBe(answered.length)
  await drainedHealth(servers[0]!.base)
  const kept = new Map((await env.sql`select item_id, user_id from purchases`).map((r) => [Number(r.item_id), r.user_id]))
  expect(log.purchases.filter((p) => p.status === 200 && kept.get(p.body.item.id) !== p.body.user_id)).toEqual([])
  return { servers, log, kept }
}

test("on a cluster, the master of the sale is killed under load: the server recovers by itself, and no item is sold twice", async () => {
  const { log } = await topologyChangeUnderLoad("failover", (key) => cluster.killMasterOf(key))
  expect(log.failed).toBe(0)
}, 90_000)

test("on a cluster, the sale's slot migrates to another master under load: 503s at most, nothing answered is lost, no item sold twice", async () => {
  const { servers, kept } = await topologyChangeUnderLoad("migration", (key) => cluster.migrateSlotOf(key))
  expect((await request(servers[1]!.base, "GET", "/status")).body.items_sold).toBe(kept.size)
}, 90_000)
