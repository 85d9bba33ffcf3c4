/**
 * A shop's planned sale through the compiled binary, on the real clock, on each backend: the embedded engine,
 * Redis with PostgreSQL (two instances), and a Redis Cluster with the sale split into 6 shards (two instances).
 * It refuses before its start, sells units inside its window (a race for an item of 5 units grants exactly 5),
 * keeps per_user and USER_LIMIT across instances, refuses after its end and sells a live hold after it. And a
 * Redis that comes back empty during such a sale loses nothing answered and sells no unit twice.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import { compiledBinary } from "./support/binary"
import { isolated, startRedis, until } from "./support/services"
import { backends, stopBackends, type BackendEnv } from "./support/backends"
import { request, startServer, type ServerProcess } from "./support/process"
import { saleViolations, tally, type Answer } from "./support/invariants"
import { inFlight } from "./support/harness"

const token = "shop-operator-token-0123456789abcdef"
const iso = (ms: number) => new Date(ms).toISOString()
const items = [
  { id: 101, name: "Sneaker", image: "/s.jpg", stock: 5 },
  { id: 102, name: "Hoodie", image: "/h.jpg", stock: 10, per_user: 2 },
  { id: 103, name: "Cap", image: "/c.jpg", stock: 10 },
  { id: 104, name: "Sock", image: "/k.jpg", stock: 10 },
]
const stock = (_: number, id: number) => items.find((i) => i.id === id)?.stock ?? 1
const perUser = (_: number, id: number) => items.find((i) => i.id === id)?.per_user ?? 1

async function admin(base: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) })
  return { status: response.status, body: (await response.json()) as any }
}

afterAll(stopBackends)

for (const backend of backends) {
  describe(backend.name, () => {
    let servers: ServerProcess[] = []
    let backendEnv: BackendEnv
    const base = (i: number) => servers[i % servers.length]!.base

    beforeAll(async () => {
      const { binary, dir } = await compiledBinary()
      backendEnv = await backend.env()
      const env = { ...backendEnv.env, SALE_SCHEDULE: "planned", ADMIN_TOKEN: token, USER_LIMIT: "3", HOLD_SECONDS: "3600", CORS_ORIGINS: "https://shop.example" }
      servers = await Promise.all(Array.from({ length: backendEnv.instances }, () => startServer(env, [binary], dir)))
    }, 60_000)
    afterAll(async () => {
      for (const s of servers) await s.stop("SIGKILL")
      await backendEnv?.close()
    })

    test("a planned sale: refused before it opens, a race for 5 units sells exactly 5, limits hold across instances, refused after it ends, a live hold bought after", async () => {
      const opens = Date.now() + 2500
      const ends = opens + 5000
      const created = await admin(base(0), "POST", "/admin/sales", { name: "Drop", starts_at: iso(opens), ends_at: iso(ends), items })
      if (created.status !== 201) throw new Error(`${JSON.stringify(created.body)}\n${servers.map((s) => s.output()).join("\n---\n")}`)
      const saleId = created.body.id
      expect(await admin(base(1), "POST", "/admin/sales", { name: "Clash", starts_at: iso(opens + 1000), ends_at: iso(ends + 1000), items })).toMatchObject({ status: 409, body: { error: "sale_overlaps", overlaps: [saleId] } })
      const bad = await admin(base(1), "POST", "/admin/sales", { name: "Bad", starts_at: "tomorrow", ends_at: iso(ends + 60_000), items: [{ id: 1, name: "", image: "/x", stock: 0 }] })
      expect(Object.keys(bad.body.fields).sort()).toEqual(["items[0].name", "items[0].stock", "starts_at"])

      // Every instance knows the sale within a second, and refuses before it opens.
      for (let i = 0; i < servers.length; i++) {
        const early = await until(`instance ${i} to know the sale`, async () => {
          const r = await request(base(i), "POST", `/checkout?user_id=early${i}&id=101`)
          return r.body.next_sale ? r : undefined
        })
        expect(early).toMatchObject({ status: 409, body: { error: "no_active_sale", next_sale: { id: saleId, name: "Drop" } } })
      }
      await until("the sale to open", async () => (await request(base(0), "POST", "/checkout?user_id=opener&id=104")).status === 200, 10_000)

      // 40 users race for 5 units, through every instance at once.
      const race = await inFlight(40, Array.from({ length: 40 }, (_, i) => () => request(base(i), "POST", `/checkout?user_id=racer${i}&id=101`)))
      expect(tally(race)).toEqual({ ok: 5, item_reserved: 35 })
      const bought = await Promise.all(race.filter((r) => r.status === 200).map((r, i) => request(base(i), "POST", `/purchase?code=${r.body.code}`)))
      expect(bought.every((b) => b.status === 200)).toBe(true)

      // per_user 2 on 102 and USER_LIMIT 3 in the sale, counted across instances.
      const buy = async (i: number, item: number) => {
        const held = await request(base(i), "POST", `/checkout?user_id=greedy&id=${item}`)
        if (held.status !== 200) return held
        return request(base(i + 1), "POST", `/purchase?code=${held.body.code}`)
      }
      expect((await buy(0, 102)).status).toBe(200)
      expect((await buy(1, 102)).status).toBe(200)
      expect(await buy(0, 102)).toMatchObject({ status: 429, body: { error: "user_limit" } })
      expect((await buy(1, 103)).status).toBe(200)
      expect(await buy(0, 104)).toMatchObject({ status: 429, body: { error: "user_limit" } })

      // /items follows within a second; its ETag gives 304; CORS for the storefront.
      const shelf = await until("/items to show the sold units", async () => {
        const r = await fetch(`${base(1)}/items`, { headers: { origin: "https://shop.example" } })
        const body = (await r.json()) as any
        return body.items?.[0]?.available === 0 ? { r, body } : undefined
      })
      expect(shelf!.r.headers.get("access-control-allow-origin")).toBe("https://shop.example")
      expect((await fetch(`${base(1)}/items`, { headers: { "if-none-match": shelf!.r.headers.get("etag")! } })).status).toBe(304)
      const preflight = await fetch(`${base(0)}/checkout`, { method: "OPTIONS", headers: { origin: "https://shop.example", "access-control-request-method": "POST" } })
      expect(preflight.status).toBe(204)
      expect(preflight.headers.get("access-control-allow-methods")).toContain("POST")

      // A hold just before the end is bought after it; a checkout after the end is refused.
      const late = await request(base(0), "POST", "/checkout?user_id=late&id=103")
      expect(late.status).toBe(200)
      await until("the sale to end", async () => (await request(base(1), "POST", "/checkout?user_id=after&id=103")).body.error === "no_active_sale", 10_000)
      expect(await request(base(1), "POST", `/purchase?code=${late.body.code}`)).toMatchObject({ status: 200, body: { user_id: "late", item: { id: 103 } } })

      // What the store kept: 5 distinct units of 101, nobody over a limit.
      await until("the store to have every sale", async () => Number((await backendEnv.query(`select count(*) as n from purchases where sale_id = ${saleId}`))[0]!.n) >= 9, 10_000)
      const units = (await backendEnv.query(`select unit from purchases where sale_id = ${saleId} and item_id = 101 order by unit`)).map((r) => Number(r.unit))
      expect(units).toEqual([1, 2, 3, 4, 5])
      expect(await saleViolations(backendEnv.query, { userLimit: 3, stock, perUser })).toEqual([])
    }, 60_000)

    test("without the token the operator API changes nothing: 401 with WWW-Authenticate", async () => {
      const before = (await admin(base(0), "GET", "/admin/sales")).body.sales.length
      const denied = await fetch(`${base(0)}/admin/sales`, { method: "POST", headers: { "content-type": "application/json", authorization: "Bearer nope-nope-nope-nope-nope-nope-nope-nope" }, body: JSON.stringify({ name: "x" }) })
      expect(denied.status).toBe(401)
      expect(denied.headers.get("www-authenticate")).toContain("Bearer")
      expect((await fetch(`${base(0)}/admin/sales`)).status).toBe(401)
      expect((await admin(base(0), "GET", "/admin/sales")).body.sales.length).toBe(before)
    })
  })
}

test("Redis back empty during a planned sale of items with several units: nothing answered is lost, no unit sells twice", async () => {
  const { binary, dir } = await compiledBinary()
  const redis = await startRedis()
  const env = await isolated({ redisUrl: redis.url })
  const config = { REDIS_URL: redis.url, DATABASE_URL: env.databaseUrl, SALE_SCHEDULE: "planned", ADMIN_TOKEN: token, USER_LIMIT: "20", HOLD_SECONDS: "600", COMMIT_WAIT_MS: "2000" }
  const servers = [await startServer(config, [binary], dir), await startServer(config, [binary], dir)]
  try {
    const many = Array.from({ length: 40 }, (_, i) => ({ id: i + 1, name: `Item ${i + 1}`, image: "/i.jpg", stock: 8, per_user: 2 }))
    const created = await admin(servers[0]!.base, "POST", "/admin/sales", { name: "Busy", starts_at: iso(Date.now() - 1000), ends_at: iso(Date.now() + 3_600_000), items: many })
    expect(created.status).toBe(201)
    const log = { checkouts: [] as Answer[], purchases: [] as Answer[] }
    let running = true
    let turn = 0
    const shopper = (user: string) => async () => {
      while (running) {
        try {
          const held = await request(servers[turn++ % 2]!.base, "POST", `/checkout?user_id=${user}&id=${1 + Math.floor(Math.random() * 40)}`)
          log.checkouts.push(held)
          if (held.status === 200) log.purchases.push(await request(servers[turn++ % 2]!.base, "POST", `/purchase?code=${held.body.code}`))
          if (held.body.error === "sold_out") return
        } catch {
          await Bun.sleep(5)
        }
      }
    }
    const load = inFlight(32, Array.from({ length: 64 }, (_, i) => shopper(`s${i}`)))
    const sold = () => log.purchases.filter((p) => p.status === 200).length
    await until("sales before the restart", () => sold() > 60)
    await redis.kill()
    await redis.start()
    const after = sold()
    await until("sales after the restart", () => sold() > after + 60, 20_000).catch((error) => {
      throw new Error(`${error.message}\n${JSON.stringify(tally(log.checkouts.slice(-200)))}\n${servers.map((s) => s.output().slice(-2000)).join("\n---\n")}`)
    })
    running = false
    await load
    const query = (text: string) => env.sql.unsafe(text) as Promise<Record<string, any>[]>
    await until("the journal to drain", async () => (await request(servers[0]!.base, "GET", "/health")).body.checks?.ledger?.backlog_entries === 0, 20_000)
    const limits = { stock: () => 8, perUser: () => 2 }
    expect(await saleViolations(query, { userLimit: 20, answers: log, ...limits })).toEqual([])
    const status = (await request(servers[1]!.base, "GET", "/status")).body
    expect(await saleViolations(query, { userLimit: 20, liveSold: new Map([[status.sale_id, status.items_sold]]), ...limits })).toEqual([])
    expect(servers[0]!.output() + servers[1]!.output()).toContain("rebuilt from PostgreSQL")
  } finally {
    for (const s of servers) await s.stop("SIGKILL")
    await env.close()
    await redis.stop()
  }
}, 90_000)
