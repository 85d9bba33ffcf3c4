/** Every outcome of every Lua script, against real Redis, with the clock passed in, through the typed calls of src/redis/scripts.ts. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test"
import type Redis from "ioredis"
import { isolated } from "./support/services"
import { registerScripts, specOf, type Scripts } from "../src/redis/scripts"
import { layoutVersion, saleKeys, statsKey } from "../src/redis/keys"
import { recordsOf } from "../src/redis/journal"
import { initArgs } from "../src/redis/lifecycle"
import { emptySnapshot, type SaleSnapshot } from "../src/sale/records"
import { catalogItems, listedItems, type Sale } from "../src/sale/sales"
import { generatedCatalog, type SaleItem } from "../src/sale/catalog"

const period = 60_000
const hold = 5_000
const sale = 30_000_000
const starts = sale * period
const t0 = starts + 1_000
const keys = saleKeys(sale)

let env: Awaited<ReturnType<typeof isolated>>
let redis: Redis
let scripts: Scripts

/** Sale `sale`: three items of one unit each (ids 1..3, as the recurring sale), a limit of 2 per user. */
const uniform = (over: Partial<Sale> = {}): Sale => ({ id: sale, kind: "planned", name: "test", startsAt: starts, endsAt: starts + period, endedAt: null, paused: false, userLimit: 2, holdMs: hold, items: catalogItems(sale, 3, generatedCatalog), rev: 1, ...over })
/** Sale `sale` with listed items: 7 of 3 units (2 per user), 9 of 1 unit. */
const listed = (over: Partial<Sale> = {}): Sale => {
  const items: SaleItem[] = [
    { id: 7, name: "Sneaker", image: "/s.jpg", stock: 3, perUser: 2 },
    { id: 9, name: "Cap", image: "/c.jpg", stock: 1, perUser: 1 },
  ]
  return uniform({ items: listedItems(items), userLimit: 5, ...over })
}

/** The sale last initialised: requests name its items' definitions, as the server's do. */
let defined = uniform()
const init = (definition = uniform(), mode: "empty" | "rebuild" = "rebuild", snapshot: SaleSnapshot = emptySnapshot(), at = t0) => {
  defined = definition
  return scripts.initSale(saleKeys(definition.id), String(at), definition.id, initArgs(definition, 1, 0, mode, snapshot))
}
const request = (userId: string, itemId: number, code: string) => ({ itemId, spec: specOf(defined.items, itemId, 1), userId, code })

/** One checkout alone: [status, code, expiry, unit], or the reply when the call decided nothing. */
const checkout = async (user: string, item: number, code = `${sale}.${user}-${item}`, at = t0) => {
  const reply = await scripts.checkout(keys, String(at), sale, [request(user, item, code)])
  if (reply.kind !== "decided") return reply
  const r = reply.results[0]!
  return [statusOf(r.outcome), r.code, r.expiresAt, r.unit]
}
const numbers: Record<string, number> = { reserved: 0, repeated: 1, unknown_item: -1, sold_out: -2, item_sold: -3, item_reserved: -4, user_limit: -5, sale_paused: -8, purchased: 0, code_not_found: -6, code_used: -7 }
const statusOf = (outcome: string) => numbers[outcome]!
/** One purchase alone: [status, item, user, unit], or the reply when the call decided nothing. */
const purchase = async (code: string, at = t0, definition = uniform()) => {
  const reply = await scripts.purchase(saleKeys(definition.id), String(at), definition.id, definition.endsAt + definition.holdMs, [code])
  if (reply.kind !== "decided") return reply
  const r = reply.results[0]!
  return [statusOf(r.outcome), r.itemId, r.userId, r.unit]
}
const status = (at = t0) => scripts.status(keys, String(at))
/** Every decision in the journal, decoded as the ledger decodes it. */
const logged = async () => (await redis.xrange(keys[5]!, "-", "+")).flatMap((entry) => recordsOf(sale, entry))

beforeAll(async () => {
  env = await isolated()
  redis = env.redis
  scripts = registerScripts(redis)
})
afterAll(() => env.close())
beforeEach(async () => {
  await redis.flushdb()
})

describe("checkout.lua", () => {
  test("grants a hold of the item's lowest free unit with the given code and expiry, and logs it", async () => {
    await init()
    expect(await checkout("ann", 1, `${sale}.a`)).toEqual([0, `${sale}.a`, t0 + hold, 1])
    expect(await logged()).toEqual([{ kind: "checkout", saleId: sale, eventId: expect.any(String), userId: "ann", itemId: 1, outcome: "reserved", code: `${sale}.a`, unit: 1, expiresAt: t0 + hold, at: t0 }])
  })

  test("the same user on the same item gets the same code back as repeated, without counting again", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    expect(await checkout("ann", 1, `${sale}.other`, t0 + 10)).toEqual([1, `${sale}.a`, t0 + hold, 1])
    expect(await redis.hget(keys[2]!, "ann")).toBe("1")
  })

  test("an item the sale does not have is unknown_item", async () => {
    await init()
    expect((await checkout("ann", 0) as number[])[0]).toBe(-1)
    expect((await checkout("ann", 4) as number[])[0]).toBe(-1)
    await redis.flushdb()
    await init(listed())
    expect((await checkout("ann", 8) as number[])[0]).toBe(-1)
  })

  test("another user's live hold of the only unit is item_reserved; a sold item is item_sold, for its buyer too", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    expect(await checkout("bob", 1)).toEqual([-4, "", 0, 0])
    await purchase(`${sale}.a`)
    expect((await checkout("bob", 1) as number[])[0]).toBe(-3)
    expect((await checkout("ann", 1) as number[])[0]).toBe(-3)
  })

  test("a repeat is found whichever of an item's holds ended last: bought, expired, or the latest one", async () => {
    // Item 7: 3 units, 2 per user. The record remembers the latest holder only while that hold lives.
    await init(listed())
    await checkout("ann", 7, "a")
    await checkout("bob", 7, "b", t0 + 10)
    expect(await purchase("b")).toEqual([0, 7, "bob", 2])
    expect(await checkout("ann", 7, "x")).toEqual([1, "a", t0 + hold, 1])
    await checkout("cat", 7, "c", t0 + 20)
    await scripts.release(keys, String(t0 + hold))
    expect(await checkout("cat", 7, "y", t0 + hold)).toEqual([1, "c", t0 + 20 + hold, 3])
    expect((await checkout("dan", 7, "d", t0 + hold) as (string | number)[]).slice(0, 2)).toEqual([0, "d"])
    expect(await checkout("dan", 7, "z", t0 + hold)).toEqual([1, "d", t0 + 2 * hold, 1])
  })

  test("a hold time shortened mid-sale: a new hold expiring before older ones is released on time, and the older one is still found", async () => {
    await init(listed())
    await checkout("ann", 7, "a")
    const shorter = listed({ holdMs: 1000, rev: 2 })
    await scripts.settings(keys, String(t0), sale, "apply", `${shorter.startsAt}|${shorter.endsAt}|0|${shorter.userLimit}|1000|2`, "", shorter.items.units)
    await checkout("cat", 7, "c", t0 + 20)
    expect(await scripts.release(keys, String(t0 + 1020))).toBe(1)
    expect(await status(t0 + 1020)).toMatchObject({ held: 1 })
    expect(await checkout("ann", 7, "x", t0 + 1020)).toEqual([1, "a", t0 + hold, 1])
  })

  test("units: each hold takes the lowest free unit; reserved once every unsold unit is held, sold once every unit is", async () => {
    await init(listed())
    expect(await checkout("ann", 7, "a")).toEqual([0, "a", t0 + hold, 1])
    expect(await checkout("bob", 7, "b")).toEqual([0, "b", t0 + hold, 2])
    expect(await checkout("cat", 7, "c")).toEqual([0, "c", t0 + hold, 3])
    expect((await checkout("dan", 7, "d") as number[])[0]).toBe(-4)
    // bob's hold expires first (made earlier): its unit, 2, is the lowest free one again.
    await scripts.checkout(keys, String(t0 + 1), sale, [])
    await purchase("a")
    await purchase("c")
    expect((await checkout("dan", 7, "d2", t0 + hold) as unknown[]).slice(0, 4)).toEqual([0, "d2", t0 + 2 * hold, 2])
    await purchase("d2", t0 + hold)
    expect((await checkout("eve", 7, "e", t0 + hold) as number[])[0]).toBe(-3)
  })

  test("per_user: a user buys, checks out again and buys again, up to the item's limit; the sale's limit counts units", async () => {
    await init(listed())
    await checkout("ann", 7, "a1")
    await purchase("a1")
    expect(await checkout("ann", 7, "a2")).toEqual([0, "a2", t0 + hold, 2])
    await purchase("a2")
    expect((await checkout("ann", 7, "a3") as number[])[0]).toBe(-5)
    expect((await checkout("ann", 9, "a4") as number[])[0]).toBe(0)
    expect(await redis.hget(keys[2]!, "ann")).toBe("3")
  })

  test("purchases plus live holds reaching the sale's limit is user_limit", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await purchase(`${sale}.a`)
    await checkout("ann", 2)
    expect((await checkout("ann", 3) as number[])[0]).toBe(-5)
  })

  test("once every unit is sold, any checkout is sold_out", async () => {
    await init()
    for (const [user, item] of [["ann", 1], ["bob", 2], ["cat", 3]] as const) {
      await checkout(user, item, `${sale}.${item}`)
      await purchase(`${sale}.${item}`)
    }
    expect((await checkout("dan", 1) as number[])[0]).toBe(-2)
  })

  test("paused: a new checkout is sale_paused; a repeat still gets its code, and sold_out comes first", async () => {
    await init(uniform({ paused: true }))
    expect((await checkout("ann", 1) as number[])[0]).toBe(-8)
    await redis.hset(statsKey(sale), "paused", 0)
    await checkout("ann", 1, "a")
    await redis.hset(statsKey(sale), "paused", 1)
    expect((await checkout("ann", 1, "x") as unknown[]).slice(0, 2)).toEqual([1, "a"])
  })

  test("an expired hold is released before deciding: the unit and the holder's slot are free again", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await checkout("ann", 2, `${sale}.b`)
    expect((await checkout("ann", 3, `${sale}.c`, t0 + hold - 1) as number[])[0]).toBe(-5)
    expect(await checkout("bob", 1, `${sale}.d`, t0 + hold)).toEqual([0, `${sale}.d`, t0 + 2 * hold, 1])
    expect((await checkout("ann", 3, `${sale}.e`, t0 + hold) as number[])[0]).toBe(0)
  })

  test("outside the sale's window (before it starts, or once it closes) the call is closed with the node's time, and nothing is logged", async () => {
    await init()
    expect(await checkout("ann", 1, `${sale}.a`, starts - 1)).toEqual({ kind: "closed", now: starts - 1 })
    expect(await checkout("ann", 1, `${sale}.a`, starts + period)).toEqual({ kind: "closed", now: starts + period })
    expect(await logged()).toEqual([])
  })

  test("an uninitialised sale, or one an earlier version laid out, is not_ready, and nothing is logged", async () => {
    expect(await checkout("ann", 1)).toEqual({ kind: "notReady" })
    await redis.hset(statsKey(sale), "sold", 0, "held", 0, "c_ok", 0, "next_exp", 0)
    expect(await checkout("ann", 1)).toEqual({ kind: "notReady" })
    expect(await redis.exists(keys[5]!)).toBe(0)
  })

  test("every decided outcome is counted as accepted or rejected", async () => {
    await init()
    await checkout("ann", 1)
    await checkout("ann", 1)
    await checkout("bob", 1)
    await checkout("bob", 99)
    expect(await redis.hmget(keys[4]!, "c_ok", "c_rej", "held")).toEqual(["2", "2", "1"])
  })

  test("a batch is decided in order, each request as if alone, in one journal entry", async () => {
    await init()
    const reply = await scripts.checkout(keys, String(t0), sale, [["ann", 1, "a"], ["bob", 1, "b"], ["ann", 1, "c"], ["ann", 2, "d"], ["ann", 3, "e"], ["bob", 9, "f"]].map(([userId, itemId, code]) => request(userId as string, itemId as number, code as string)))
    expect(await redis.xlen(keys[5]!)).toBe(1)
    expect(reply.kind === "decided" && reply.results.map((r) => [r.outcome, r.code, r.unit])).toEqual([["reserved", "a", 1], ["item_reserved", "", 0], ["repeated", "a", 1], ["reserved", "d", 1], ["user_limit", "", 0], ["unknown_item", "", 0]])
    expect(await redis.hmget(keys[4]!, "c_ok", "c_rej", "held")).toEqual(["3", "3", "2"])
  })

  test("the avail string follows every hold, sale and expiry: units neither sold nor held, per item", async () => {
    await init(listed())
    const avail = async () => {
      const b = (await redis.getBuffer(keys[7]!))!
      return [b.readUInt32BE(0), b.readUInt32BE(4)]
    }
    expect(await avail()).toEqual([3, 1])
    await checkout("ann", 7, "a")
    await checkout("bob", 9, "b")
    expect(await avail()).toEqual([2, 0])
    await purchase("a")
    expect(await avail()).toEqual([2, 0])
    await scripts.release(keys, String(t0 + hold))
    expect(await avail()).toEqual([2, 1])
  })
})

describe("purchase.lua", () => {
  test("a live hold converts to a sale of its unit, once", async () => {
    await init()
    await checkout("ann", 2, `${sale}.a`)
    expect(await purchase(`${sale}.a`, t0 + 5)).toEqual([0, 2, "ann", 1])
    expect((await purchase(`${sale}.a`, t0 + 6) as number[])[0]).toBe(-7)
    expect((await logged()).slice(1).map((e) => e.outcome)).toEqual(["purchased", "code_used"])
    expect(await redis.hmget(keys[4]!, "sold", "held", "p_ok", "p_rej")).toEqual(["1", "0", "1", "1"])
  })

  test("a code never issued, or whose hold expired, is code_not_found; the unit went back to stock", async () => {
    await init()
    expect((await purchase(`${sale}.nope`) as number[])[0]).toBe(-6)
    await checkout("ann", 1, `${sale}.a`)
    expect((await purchase(`${sale}.a`, t0 + hold) as number[])[0]).toBe(-6)
    expect((await checkout("bob", 1, "b", t0 + hold) as number[])[0]).toBe(0)
  })

  test("a hold granted before the sale closed can be bought after, until it expires; a paused sale sells its holds", async () => {
    await init()
    const late = starts + period - 1
    await checkout("ann", 1, `${sale}.a`, late)
    await redis.hset(statsKey(sale), "paused", 1)
    expect(await purchase(`${sale}.a`, late + hold - 1)).toEqual([0, 1, "ann", 1])
  })

  test("a code of a sale that has not started is code_not_found, and nothing is logged", async () => {
    await init(uniform(), "empty", emptySnapshot(), starts - 10)
    expect(await purchase(`${sale}.a`, starts - 1)).toEqual({ kind: "unknown" })
    expect(await logged()).toEqual([])
  })

  test("an uninitialised sale whose holds may still be live is not_ready; an older one is code_not_found", async () => {
    expect(await purchase(`${sale}.a`)).toEqual({ kind: "notReady" })
    expect(await purchase(`${sale}.a`, starts + period + hold)).toEqual({ kind: "unknown" })
  })
})

describe("release.lua and status.lua", () => {
  test("release returns the number of expired holds it released; status counts after releasing", async () => {
    await init()
    await checkout("ann", 1)
    await checkout("bob", 2, `${sale}.b`, t0 + 1)
    expect(await scripts.release(keys, String(t0 + hold))).toBe(1)
    expect(await status(t0 + hold)).toMatchObject({ sold: 0, held: 1, units: 3, checkoutsOk: 2 })
    expect(await scripts.release(keys, String(t0 + hold + 1))).toBe(1)
    expect(await scripts.release(keys, String(t0 + hold + 2))).toBe(0)
    expect(await redis.hlen(keys[2]!)).toBe(0)
  })

  test("after the earliest hold is bought, later holds still expire exactly on time", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await checkout("bob", 2, `${sale}.b`, t0 + 10)
    await purchase(`${sale}.a`, t0 + 1)
    expect(await scripts.release(keys, String(t0 + hold))).toBe(0)
    expect((await checkout("cat", 2, `${sale}.c`, t0 + hold + 9) as number[])[0]).toBe(-4)
    expect((await checkout("cat", 2, `${sale}.c`, t0 + hold + 10) as number[])[0]).toBe(0)
  })

  test("status of an uninitialised part is not_ready; release does nothing", async () => {
    expect(await status()).toEqual({ kind: "notReady" })
    expect(await scripts.release(keys, String(t0))).toBe(0)
  })
})

describe("init_sale.lua", () => {
  test("an empty part keeps no record per item: each is made from its definition when first touched, then is the truth", async () => {
    const many = listed({ items: listedItems(Array.from({ length: 5000 }, (_, i) => ({ id: i + 1, name: `Item ${i + 1}`, image: "", stock: 1 + (i % 3), perUser: 1 }))) })
    expect(await init(many)).toBe(1)
    expect(await redis.hlen(keys[0]!)).toBe(0)
    expect(await status()).toMatchObject({ units: many.items.units })
    const avail = (await redis.getBuffer(keys[7]!))!
    expect([avail.length, avail.readUInt32BE(0), avail.readUInt32BE(4), avail.readUInt32BE(4 * 4999)]).toEqual([4 * 5000, 1, 2, 2])
    expect(await checkout("ann", 5000, "a")).toEqual([0, "a", t0 + hold, 1])
    expect(await redis.hget(keys[0]!, "5000")).toBe("2|1|0|1|2|4999|ann")
    // A request naming another definition (an instance that has not read a change yet) is decided by the record.
    const stale = await scripts.checkout(keys, String(t0), sale, [{ itemId: 5000, spec: "4999|9|1", userId: "bob", code: "b" }, { itemId: 5000, spec: "4999|9|1", userId: "cat", code: "c" }])
    expect(stale.kind === "decided" && stale.results.map((r) => r.outcome)).toEqual(["reserved", "item_reserved"])
  })

  test("rebuilds sold units, live holds, per-user and per-item counts and counters from a snapshot", async () => {
    const snapshot: SaleSnapshot = {
      checkouts: { accepted: 5, rejected: 6 },
      purchases: { accepted: 1, rejected: 2 },
      sold: [{ itemId: 7, unit: 2, userId: "ann", code: "s", at: t0 - 10 }],
      holds: [{ itemId: 7, unit: 3, userId: "bob", code: "h", at: t0 + 100 }],
    }
    expect(await init(listed(), "rebuild", snapshot)).toBe(1)
    expect(await status()).toMatchObject({ sold: 1, held: 1, units: 4, checkoutsOk: 5, checkoutsRejected: 6, purchasesOk: 1, purchasesRejected: 2 })
    // Unit 1 was never in use below the highest: it is free, and the lowest.
    expect(await checkout("cat", 7, "c")).toEqual([0, "c", t0 + hold, 1])
    expect((await checkout("dan", 7, "d") as number[])[0]).toBe(-4)
    expect(await checkout("bob", 7, "x")).toEqual([1, "h", t0 + 100, 3])
    expect(await purchase("h")).toEqual([0, 7, "bob", 3])
    expect((await purchase("s") as number[])[0]).toBe(-7)
    // ann bought one of 7 (per_user 2): she may check out one more.
    expect((await checkout("ann", 7, "a", t0 + 101) as number[])[0]).toBe(-4)
  })

  test("a store that has a unit sold and held, or held twice, rebuilds it sold, or held by the later hold only", async () => {
    const snapshot: SaleSnapshot = {
      ...emptySnapshot(),
      sold: [{ itemId: 3, unit: 1, userId: "ann", code: "s", at: t0 - 10 }],
      holds: [
        { itemId: 3, unit: 1, userId: "bob", code: "h3", at: t0 + 100 },
        { itemId: 1, unit: 1, userId: "cat", code: "old", at: t0 + 1 },
        { itemId: 1, unit: 1, userId: "dan", code: "new", at: t0 + 100 },
      ],
    }
    expect(await init(uniform(), "rebuild", snapshot)).toBe(1)
    expect(await status()).toMatchObject({ sold: 1, held: 1 })
    expect((await purchase("old") as number[])[0]).toBe(-6)
    expect((await purchase("h3") as number[])[0]).toBe(-6)
    expect(await purchase("new")).toEqual([0, 1, "dan", 1])
    expect(await redis.hget(keys[2]!, "cat")).toBeNull()
  })

  test("does nothing if the part is initialised; rebuilds a part an earlier version laid out", async () => {
    await init()
    await checkout("ann", 1)
    expect(await init()).toBe(0)
    expect(await redis.hget(keys[4]!, "c_ok")).toBe("1")
    await redis.hdel(statsKey(sale), "v")
    expect(await init()).toBe(1)
    expect(await redis.hget(keys[4]!, "v")).toBe(layoutVersion)
    expect(await redis.hget(keys[4]!, "c_ok")).toBe("0")
  })

  test("refuses to initialise a sale empty once it has started", async () => {
    expect(await init(uniform(), "empty")).toBe(-1)
    expect(await init(uniform(), "empty", emptySnapshot(), starts - 1)).toBe(1)
  })
})

describe("settings.lua", () => {
  const text = (s: Sale, closes: number | "now" = s.endsAt) => `${s.startsAt}|${closes}|${s.paused ? 1 : 0}|${s.userLimit}|${s.holdMs}|${s.rev}`
  /** The items argument naming these stocks of `s`'s items, and the units of the sale once they are set. */
  const stocks = (s: Sale, set: [id: number, stock: number][] = []): [string, number] => {
    const named = set.map(([id, stock]) => `${id}:${stock}:${s.items.at(s.items.position(id)).perUser}:${s.items.position(id)}`)
    let units = 0
    for (let p = 0; p < s.items.size; p++) units += set.find(([id]) => id === s.items.at(p).id)?.[1] ?? s.items.at(p).stock
    return [named.join(","), units]
  }

  test("restrict pauses at once and marks the part dirty; apply brings the kept settings with their revision; an older one is ignored", async () => {
    await init()
    expect(await scripts.settings(keys, String(t0), sale, "restrict", text(uniform({ paused: true })), ...stocks(uniform()))).toEqual({ kind: "done", now: t0 })
    expect(await redis.hmget(statsKey(sale), "paused", "dirty", "rev")).toEqual(["1", "1", "1"])
    expect((await checkout("ann", 1) as number[])[0]).toBe(-8)
    expect(await scripts.settings(keys, String(t0), sale, "apply", text(uniform({ paused: true, rev: 2 })), ...stocks(uniform()))).toEqual({ kind: "done", now: t0 })
    expect(await redis.hmget(statsKey(sale), "paused", "dirty", "rev")).toEqual(["1", "0", "2"])
    expect(await scripts.settings(keys, String(t0), sale, "apply", text(uniform({ rev: 1 })), ...stocks(uniform()))).toEqual({ kind: "older", now: t0 })
    expect(await redis.hget(statsKey(sale), "paused")).toBe("1")
  })

  test("an end closes the sale at the node's time; restrict never loosens", async () => {
    await init()
    await scripts.settings(keys, String(t0 + 5), sale, "restrict", text(uniform(), "now"), ...stocks(uniform()))
    expect(await checkout("ann", 1, "a", t0 + 5)).toEqual({ kind: "closed", now: t0 + 5 })
    await scripts.settings(keys, String(t0 + 6), sale, "restrict", text(uniform()), ...stocks(uniform()))
    expect(await redis.hget(statsKey(sale), "closes")).toBe(String(t0 + 5))
  })

  test("a stock set for an item not touched yet makes its record, so a request naming the old stock sells the new one", async () => {
    await init(listed())
    await scripts.settings(keys, String(t0), sale, "apply", text(listed({ rev: 2 })), ...stocks(listed(), [[9, 2]]))
    expect(await status()).toMatchObject({ units: 5 })
    expect((await checkout("ann", 9, "a") as number[])[0]).toBe(0)
    expect((await checkout("bob", 9, "b") as number[])[0]).toBe(0)
    expect((await checkout("cat", 9, "c") as number[])[0]).toBe(-4)
  })

  test("a stock goes no lower than the highest unit sold or held; a raised one sells more", async () => {
    await init(listed())
    await checkout("ann", 7, "a")
    await checkout("bob", 7, "b")
    expect(await scripts.settings(keys, String(t0), sale, "restrict", text(listed()), ...stocks(listed(), [[7, 1]]))).toEqual({ kind: "inUse", itemId: 7, unit: 2 })
    expect(await scripts.settings(keys, String(t0), sale, "restrict", text(listed()), ...stocks(listed(), [[7, 2]]))).toEqual({ kind: "done", now: t0 })
    expect((await checkout("cat", 7, "c") as number[])[0]).toBe(-4)
    expect(await status()).toMatchObject({ units: 3 })
    await scripts.settings(keys, String(t0), sale, "apply", text(listed({ rev: 2 })), ...stocks(listed({ rev: 2 }), [[7, 5]]))
    expect(await checkout("cat", 7, "c")).toEqual([0, "c", t0 + hold, 3])
    expect(await status()).toMatchObject({ units: 6 })
  })
})

describe("a sale split into shards (shard_*.lua)", () => {
  // Two shards of `uniform()`: shard 0 holds items 1 and 3, shard 1 item 2; both users are counted on shard 1.
  const [item0, user1] = [saleKeys(`${sale}:0`), saleKeys(`${sale}:1`)]
  const initShard = (k: number, users = new Map<string, string>()) => scripts.initSale(saleKeys(`${sale}:${k}`), String(t0), sale, initArgs(uniform(), 2, k, "rebuild", emptySnapshot(), emptySnapshot(), users))
  /** Step 1 of one checkout: [status, code, expiry], or the reply when the call decided nothing. */
  const take = async (user: string, item: number, code: string, { others = "unknown" as "unknown" | "sold-out" | "selling", wait = true } = {}, at = t0, shardKeys = item0) => {
    const reply = await scripts.shardHold(shardKeys, String(at), sale, [{ itemId: item, spec: specOf(uniform().items, item, 2), userId: user, code, others, wait }])
    if (reply.kind !== "decided") return reply
    const r = reply.results[0]!
    return [r.status, r.code, r.expiresAt]
  }
  /** Step 2: [status, codes to ask about]. */
  const slot = async (user: string, code: string, at = t0, asked = false) => {
    const reply = await scripts.shardSlot(user1, sale, [{ userId: user, code, expiresAt: at + hold, at, asked }])
    return "kind" in reply ? reply : [reply[0]!.status, reply[0]!.asked.join(",")]
  }
  /** Step 3 on shard 0: the request's status. */
  const settle = async (item: number, user: string, code: string, verdict: number, at = t0, shardKeys = item0) => {
    const reply = await scripts.shardSettle(shardKeys, at, sale, [{ itemId: item, userId: user, code, verdict }])
    return "kind" in reply ? reply : reply.statuses[0]
  }
  const buy = (code: string, shardKeys = item0) => scripts.purchase(shardKeys, String(t0), sale, starts + period + hold, [code])
  beforeEach(async () => {
    await initShard(0)
    await initShard(1)
  })

  test("a free unit is held tentatively: not yet held for anyone's purchase, refused to others, and in flight for its own user", async () => {
    expect(await take("ann", 1, "A-ann-1")).toEqual([2, "A-ann-1", t0 + hold])
    expect((await buy("A-ann-1")).kind === "decided" && (await buy("A-ann-1"))).toMatchObject({ results: [{ outcome: "code_not_found" }] })
    expect(await take("bob", 1, "A-bob-1")).toEqual([-4, "", 0])
    expect(await take("ann", 1, "A-ann-2")).toEqual([-13, "A-ann-1", 0])
    expect(await take("ann", 1, "A-ann-2", { wait: false })).toEqual([-4, "", 0])
  })

  test("slot then settle makes it a hold, bought once; a refused slot sends the unit back to stock", async () => {
    await take("ann", 1, "c1")
    expect(await slot("ann", "c1")).toEqual([0, ""])
    expect(await settle(1, "ann", "c1", 0)).toBe(0)
    expect(await buy("c1")).toMatchObject({ results: [{ outcome: "purchased", itemId: 1, userId: "ann", unit: 1 }] })
    await take("ann", 3, "c3")
    expect(await slot("ann", "c3")).toEqual([0, ""])
    await take("ann", 2, "c2", {}, t0, user1)
    expect(await slot("ann", "c2")).toEqual([-5, ""])
    expect(await settle(2, "ann", "c2", -5, t0, user1)).toBe(-5)
    expect(await take("bob", 2, "c2b", {}, t0, user1)).toEqual([2, "c2b", t0 + hold])
  })

  test("a checkout whose slot step failed is abandoned: the unit goes back to stock and nothing is journaled", async () => {
    await take("ann", 1, "c1")
    const before = await redis.xlen(item0[5]!)
    expect(await settle(1, "ann", "c1", -16)).toBe(-16)
    expect(await redis.xlen(item0[5]!)).toBe(before)
    expect(await take("bob", 1, "b1")).toEqual([2, "b1", t0 + hold])
  })

  test("a crash after the slot was taken: the user is refused until the hold's expiry, then the item shard is asked and the slot freed", async () => {
    await take("ann", 1, "c1")
    expect(await slot("ann", "c1")).toEqual([0, ""])
    await take("ann", 3, "c3")
    expect(await slot("ann", "c3")).toEqual([0, ""])
    // Neither hold was settled (the server died): both stay tentative, both slots taken.
    const later = t0 + hold
    expect(await slot("ann", "c-next", later - 1)).toEqual([-5, ""])
    expect(await slot("ann", "c-next", later)).toEqual([-14, "c1,c3"])
    expect(await scripts.shardVerify(item0, String(later), sale, ["c1", "c3"])).toEqual(["ended", "ended"])
    expect(await scripts.shardUnslot(user1, sale, [["ann", "c1", "ended"], ["ann", "c3", "ended"]])).toBe(2)
    expect(await slot("ann", "c-next", later)).toEqual([0, ""])
    // The units went back to stock with the expiry.
    expect(await take("bob", 1, "b1", {}, later)).toEqual([2, "b1", later + hold])
  })

  test("a bought hold past its expiry stays counted: the item shard says bought, and the user is refused", async () => {
    for (const [item, code] of [[1, "c1"], [3, "c3"]] as const) {
      await take("ann", item, code)
      await slot("ann", code)
      await settle(item, "ann", code, 0)
    }
    await buy("c1")
    const later = t0 + hold
    expect(await slot("ann", "c-next", later)).toEqual([-14, "c1,c3"])
    expect(await scripts.shardVerify(item0, String(later), sale, ["c1", "c3"])).toEqual(["bought", "ended"])
    await scripts.shardUnslot(user1, sale, [["ann", "c1", "bought"], ["ann", "c3", "ended"]])
    await slot("ann", "c-next", later)
    expect(await slot("ann", "c-after", later, true)).toEqual([-5, ""])
  })

  test("a sold-out shard asks for the others; with them it answers sold_out, without item_sold", async () => {
    for (const [item, code] of [[1, "c1"], [3, "c3"]] as const) {
      await take(`u${item}`, item, code)
      await settle(item, `u${item}`, code, 0)
      await buy(code)
    }
    expect(await take("bob", 1, "x")).toEqual([-12, "", 0])
    expect(await take("bob", 1, "x", { others: "sold-out" })).toEqual([-2, "", 0])
    expect(await take("bob", 1, "x", { others: "selling" })).toEqual([-3, "", 0])
  })

  test("a slot already listed (the shard was rebuilt while the hold was tentative) is decided again, against the others", async () => {
    await redis.del(user1[4]!)
    await initShard(1, new Map([["ann", `2|c1:${t0 + hold}|c3:${t0 + hold}`]]))
    expect(await slot("ann", "c3")).toEqual([0, ""])
    await redis.del(user1[4]!)
    await initShard(1, new Map([["ann", `3|c1:${t0 + hold}|c3:${t0 + hold}|c4:${t0 + hold}`]]))
    expect(await slot("ann", "c4")).toEqual([-5, ""])
    expect(await redis.hget(user1[2]!, "ann")).toBe(`2|c1:${t0 + hold}|c3:${t0 + hold}`)
  })

  test("a listed slot decided again at the limit asks about the user's expired holds before refusing", async () => {
    await redis.del(user1[4]!)
    await initShard(1, new Map([["ann", `3|c1:${t0 - 1}|c3:${t0 + hold}|c4:${t0 + hold}`]]))
    expect(await slot("ann", "c4")).toEqual([-14, "c1"])
    expect(await slot("ann", "c4", t0, true)).toEqual([-5, ""])
  })
})
