/**
 * The sale's invariants under real concurrency: hundreds of requests in flight through HTTP, against real
 * Redis and PostgreSQL. They run on each engine, and once more on a real Redis Cluster (3 masters) with
 * every sale split into 6 shards (SALE_SHARDS=6), where one checkout takes steps on two masters.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test"
import { engines, harness, inFlight, serve, tally, type EngineKind, type Harness, type OnCluster, type SaleConfig } from "./support/harness"
import { startRedisCluster, type RedisCluster } from "./support/services"
import { saleViolations } from "./support/invariants"

let open: { h: Harness; server: ReturnType<typeof serve> }[] = []
let kind: EngineKind = "redis"
let onCluster: { cluster: OnCluster; saleShards: number } | undefined
async function start(config: SaleConfig | Partial<SaleConfig>) {
  const h = await harness(onCluster ? { ...config, saleShards: onCluster.saleShards } : config, kind, { cluster: onCluster?.cluster })
  const server = serve(h)
  open.push({ h, server })
  return { h, server }
}
afterEach(async () => {
  for (const { h, server } of open) {
    await server.stop()
    await h.close()
  }
  open = []
})

let cluster: RedisCluster | undefined
afterAll(async () => {
  await cluster?.stop()
})

const variants = [...engines.map((engine) => ({ engine, name: `${engine} engine`, shards: 0 })), { engine: "redis" as const, name: "redis engine on a cluster, sales split into 6 shards", shards: 6 }]
for (const variant of variants) {
  describe(variant.name, () => {
    beforeAll(async () => {
      kind = variant.engine
      if (variant.shards > 0) cluster ??= await startRedisCluster()
      onCluster = variant.shards > 0 ? { cluster: cluster!, saleShards: variant.shards } : undefined
    }, 60_000)

    test("demand far above stock sells exactly the stock: no item twice, no user over the limit, every attempt kept", async () => {
      const { h, server } = await start({ saleItems: 300, userLimit: 3 })
      const checkouts: { status: number; body: any }[] = []
      const purchases: { status: number; body: any }[] = []
      const shopper = (user: string) => async () => {
        for (let attempt = 0; attempt < 12; attempt++) {
          const held = await server.checkout(user, 1 + Math.floor(Math.random() * 300))
          checkouts.push(held)
          if (held.body.error === "sold_out" || held.body.error === "user_limit") return
          if (held.status === 200) purchases.push(await server.purchase(held.body.code))
        }
      }
      await inFlight(400, Array.from({ length: 1000 }, (_, i) => shopper(`u${i}`)))
      // Whatever random demand left unsold, a sweep over every item by fresh users sells it.
      await inFlight(300, Array.from({ length: 300 }, (_, i) => async () => {
        const held = await server.checkout(`sweeper${i}`, i + 1)
        checkouts.push(held)
        if (held.status === 200) purchases.push(await server.purchase(held.body.code))
      }))

      const sold = purchases.filter((p) => p.status === 200)
      expect(sold.length).toBe(300)
      expect(new Set(sold.map((p) => p.body.item.id)).size).toBe(300)
      expect((await server.checkout("late", 1)).body.error).toBe("sold_out")
      checkouts.push({ status: 409, body: { error: "sold_out" } })

      await h.drained()
      expect(await saleViolations(h.query, { userLimit: 3, answers: { checkouts, purchases }, attempts: "exact", soldOut: 300 })).toEqual([])
    })

    test("many users racing for one item: exactly one hold", async () => {
      const { server } = await start({ saleItems: 10 })
      const results = await inFlight(300, Array.from({ length: 300 }, (_, i) => () => server.checkout(`racer${i}`, 7)))
      expect(tally(results)).toEqual({ ok: 1, item_reserved: 299 })
    })

    test("one code purchased by many requests at once sells once", async () => {
      const { server } = await start({ saleItems: 10 })
      const held = await server.checkout("ann", 3)
      const results = await inFlight(300, Array.from({ length: 300 }, () => () => server.purchase(held.body.code)))
      expect(tally(results)).toEqual({ ok: 1, code_used: 299 })
    })

    test("one user firing many checkouts at once gets exactly USER_LIMIT holds", async () => {
      const { server } = await start({ saleItems: 200, userLimit: 5 })
      const results = await inFlight(200, Array.from({ length: 200 }, (_, i) => () => server.checkout("greedy", i + 1)))
      expect(tally(results)).toEqual({ ok: 5, user_limit: 195 })
    })

    test("expired holds go back to stock, so later demand buys out the whole sale", async () => {
      const { h, server } = await start({ saleItems: 100, userLimit: 1, holdSeconds: 30 })
      const first = await inFlight(200, Array.from({ length: 100 }, (_, i) => () => server.checkout(`idle${i}`, i + 1)))
      expect(tally(first)).toEqual({ ok: 100 })
      expect((await server.checkout("buyer0", 1)).body.error).toBe("item_reserved")
      h.clock.now += 30_000
      const second = await inFlight(200, Array.from({ length: 100 }, (_, i) => async () => {
        const held = await server.checkout(`buyer${i}`, i + 1)
        return held.status === 200 ? server.purchase(held.body.code) : held
      }))
      expect(tally(second)).toEqual({ ok: 100 })
      expect((await h.call("GET", "/status")).body).toMatchObject({ items_sold: 100, items_reserved: 0, items_available: 0, sale_status: "sold_out" })
    })

    test("the per-user limit starts afresh in the next sale", async () => {
      const { h, server } = await start({ saleItems: 50, userLimit: 2, salePeriodSeconds: 60 })
      const sale = Math.floor(h.clock.now / 60_000)
      await inFlight(10, [1, 2].map((id) => () => server.checkout("ann", id)))
      expect((await server.checkout("ann", 3)).body.error).toBe("user_limit")
      h.clock.now = (sale + 1) * 60_000
      const next = await server.checkout("ann", 3)
      expect(next).toMatchObject({ status: 200, body: { sale_id: sale + 1 } })
    })

    test("a hold granted before the boundary can be purchased after it until it expires; unsold items of the old sale are not sold", async () => {
      const { h, server } = await start({ saleItems: 50, salePeriodSeconds: 60, holdSeconds: 30 })
      const sale = Math.floor(h.clock.now / 60_000)
      h.clock.now = (sale + 1) * 60_000 - 1
      const late = await server.checkout("ann", 5)
      const early = await server.checkout("bob", 6)
      expect(late.body.sale_id).toBe(sale)
      h.clock.now = (sale + 1) * 60_000 + 29_998
      expect(await server.purchase(late.body.code)).toMatchObject({ status: 200, body: { sale_id: sale, item: { id: 5 } } })
      h.clock.now += 1
      expect((await server.purchase(early.body.code)).body.error).toBe("code_not_found")
      const now = await server.checkout("cat", 5)
      expect(now).toMatchObject({ status: 200, body: { sale_id: sale + 1 } })
    })
  })
}
