/** Every outcome of every Lua script, against real Redis, with the clock passed in. */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test"
import type Redis from "ioredis"
import { isolated } from "./support/services"
import { registerScripts, type Scripts } from "../src/redis/scripts"
import { saleKeys } from "../src/redis/keys"
import { recordsOf } from "../src/redis/journal"

const period = 60_000
const hold = 5_000
const sale = 30_000_000
const t0 = sale * period + 1_000
const items = 3
const limit = 2
const keys = saleKeys(sale)

let env: Awaited<ReturnType<typeof isolated>>
let redis: Redis
let scripts: Scripts

const init = (at = t0, saleId = sale, mode = "rebuild", rest: (string | number)[] = [0, 0, 0, 0, 0, 0]) => scripts.initSale(saleKeys(saleId), [at, saleId, period, mode, ...rest])
/** Several checkouts in one call: {0, now, then status, code, expiry per request}. */
const batch = (requests: [string, number, string][], at = t0, saleId = sale) =>
  scripts.checkout(saleKeys(saleId), [at, saleId, period, items, limit, hold, ...requests.flatMap(([user, item, code]) => [item, user, code])])
/** The reply without the journal entry id (index 2), which Redis chooses. */
const decided = (reply: (string | number)[]) => [...reply.slice(0, 2), ...reply.slice(3)]
/** One checkout alone: {status, code, expiry, now}, or the whole reply when the call decided nothing. */
const checkout = async (user: string, item: number, code = `${sale}.${user}-${item}`, at = t0, saleId = sale) => {
  const reply = await batch([[user, item, code]], at, saleId)
  return reply[0] === 0 ? [reply[3], reply[4], reply[5], reply[1]] : reply
}
/** Several purchases in one call: {0, now, then status, item, user per code}. */
const purchases = (codes: string[], at = t0, saleId = sale) => scripts.purchase(saleKeys(saleId), [at, saleId, period, hold, ...codes])
/** One purchase alone: {0, item, user, now} when bought, {status} otherwise, or the whole reply when the call decided nothing. */
const purchase = async (code: string, at = t0, saleId = sale) => {
  const reply = await purchases([code], at, saleId)
  if (reply.length === 1) return reply
  return reply[3] === 0 ? [0, reply[4], reply[5], reply[1]] : [reply[3]]
}
const status = (at = t0, saleId = sale) => scripts.status(saleKeys(saleId), [at, saleId, period])
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
  test("grants a hold with the given code and expiry, and logs it", async () => {
    await init()
    expect(await checkout("ann", 1, `${sale}.a`)).toEqual([0, `${sale}.a`, t0 + hold, t0])
    expect(await logged()).toEqual([{ kind: "checkout", saleId: sale, eventId: expect.any(String), userId: "ann", itemId: 1, outcome: "reserved", code: `${sale}.a`, expiresAt: t0 + hold, at: t0 }])
  })

  test("the same user on the same item gets the same code back as repeated, without counting again", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    expect(await checkout("ann", 1, `${sale}.other`, t0 + 10)).toEqual([1, `${sale}.a`, t0 + hold, t0 + 10])
    expect(await redis.hget(keys[2]!, "ann")).toBe("1")
  })

  test("an item outside 1..SALE_ITEMS is unknown_item", async () => {
    await init()
    expect((await checkout("ann", 0))[0]).toBe(-1)
    expect((await checkout("ann", items + 1))[0]).toBe(-1)
  })

  test("another user's live hold is item_reserved", async () => {
    await init()
    await checkout("ann", 1)
    expect(await checkout("bob", 1)).toEqual([-4, "", 0, t0])
  })

  test("a sold item is item_sold, for its buyer too", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await purchase(`${sale}.a`)
    expect((await checkout("bob", 1))[0]).toBe(-3)
    expect((await checkout("ann", 1))[0]).toBe(-3)
  })

  test("purchases plus live holds reaching USER_LIMIT is user_limit", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await purchase(`${sale}.a`)
    await checkout("ann", 2)
    expect((await checkout("ann", 3))[0]).toBe(-5)
  })

  test("once every item is sold, any checkout is sold_out", async () => {
    await init()
    for (const [user, item] of [["ann", 1], ["bob", 2], ["cat", 3]] as const) {
      await checkout(user, item, `${sale}.${item}`)
      await purchase(`${sale}.${item}`)
    }
    expect((await checkout("dan", 1))[0]).toBe(-2)
  })

  test("an expired hold is released before deciding: the item and the holder's slot are free again", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await checkout("ann", 2, `${sale}.b`)
    expect((await checkout("ann", 3, `${sale}.c`, t0 + hold - 1))[0]).toBe(-5)
    expect(await checkout("bob", 1, `${sale}.d`, t0 + hold)).toEqual([0, `${sale}.d`, t0 + 2 * hold, t0 + hold])
    expect((await checkout("ann", 3, `${sale}.e`, t0 + hold))[0]).toBe(0)
  })

  test("keys of another sale than the current one get wrong_sale with the current sale id, and nothing is logged", async () => {
    await init()
    expect(await checkout("ann", 1, `${sale}.a`, t0 + period)).toEqual([-10, String(sale + 1)])
    expect(await logged()).toEqual([])
  })

  test("an uninitialised sale is not_ready, and nothing is logged", async () => {
    expect(await checkout("ann", 1)).toEqual([-11])
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
})

describe("checkout.lua with several requests in one call", () => {
  test("decides them in order, each as if alone", async () => {
    await init()
    const reply = await batch([["ann", 1, `${sale}.a`], ["bob", 1, `${sale}.b`], ["ann", 1, `${sale}.c`], ["ann", 2, `${sale}.d`], ["ann", 3, `${sale}.e`], ["bob", 9, `${sale}.f`]])
    expect(await redis.xlen(keys[5]!)).toBe(1)
    expect(decided(reply)).toEqual([0, t0, 0, `${sale}.a`, t0 + hold, -4, "", 0, 1, `${sale}.a`, t0 + hold, 0, `${sale}.d`, t0 + hold, -5, "", 0, -1, "", 0])
    expect((await logged()).map((e) => e.outcome)).toEqual(["reserved", "item_reserved", "repeated", "reserved", "user_limit", "unknown_item"])
    expect(await redis.hmget(keys[4]!, "c_ok", "c_rej", "held")).toEqual(["3", "3", "2"])
  })

  test("a wrong sale or an uninitialised sale decides none of them", async () => {
    expect(await batch([["ann", 1, "x"], ["bob", 2, "y"]])).toEqual([-11])
    await init()
    expect(await batch([["ann", 1, "x"], ["bob", 2, "y"]], t0 + period)).toEqual([-10, String(sale + 1)])
    expect(await logged()).toEqual([])
  })
})

describe("purchase.lua", () => {
  test("a live hold converts to a sale, once", async () => {
    await init()
    await checkout("ann", 2, `${sale}.a`)
    expect(await purchase(`${sale}.a`, t0 + 5)).toEqual([0, 2, "ann", t0 + 5])
    expect(await purchase(`${sale}.a`, t0 + 6)).toEqual([-7])
    expect((await logged()).slice(1).map((e) => e.outcome)).toEqual(["purchased", "code_used"])
    expect(await redis.hmget(keys[4]!, "sold", "held", "p_ok", "p_rej")).toEqual(["1", "0", "1", "1"])
  })

  test("a code never issued is code_not_found", async () => {
    await init()
    expect(await purchase(`${sale}.nope`)).toEqual([-6])
  })

  test("an expired hold's code is code_not_found, and the item went back to stock", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    expect(await purchase(`${sale}.a`, t0 + hold)).toEqual([-6])
    expect(await redis.hexists(keys[0]!, "1")).toBe(0)
  })

  test("a hold granted before the sale ended can be bought after, until it expires", async () => {
    await init()
    const late = sale * period + period - 1
    await checkout("ann", 1, `${sale}.a`, late)
    expect(await purchase(`${sale}.a`, late + hold - 1)).toEqual([0, 1, "ann", late + hold - 1])
  })

  test("a code of a sale that has not started is code_not_found", async () => {
    await init(t0, sale + 1, "empty")
    expect(await purchase(`${sale + 1}.a`, t0, sale + 1)).toEqual([-6])
  })

  test("an uninitialised sale whose holds may still be live is not_ready; an older one is code_not_found", async () => {
    expect(await purchase(`${sale}.a`)).toEqual([-11])
    expect(await purchase(`${sale}.a`, (sale + 1) * period + hold)).toEqual([-6])
  })
})

describe("purchase.lua with several codes in one call", () => {
  test("decides them in order, each as if alone", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await checkout("bob", 2, `${sale}.b`)
    expect(decided(await purchases([`${sale}.a`, `${sale}.a`, `${sale}.zz`, `${sale}.b`], t0 + 3))).toEqual([0, t0 + 3, 0, 1, "ann", -7, 1, "ann", -6, 0, "", 0, 2, "bob"])
    expect((await logged()).slice(2).map((e) => e.outcome)).toEqual(["purchased", "code_used", "code_not_found", "purchased"])
    expect(await redis.hmget(keys[4]!, "sold", "held", "p_ok", "p_rej")).toEqual(["2", "0", "2", "2"])
  })

  test("an uninitialised sale decides none of them", async () => {
    expect(await purchases([`${sale}.a`, `${sale}.b`])).toEqual([-11])
    expect(await logged()).toEqual([])
  })
})

describe("release.lua", () => {
  test("returns the number of expired holds it released", async () => {
    await init()
    await checkout("ann", 1)
    await checkout("bob", 2, `${sale}.b`, t0 + 1)
    expect(await scripts.release(keys, [t0 + hold])).toBe(1)
    expect(await scripts.release(keys, [t0 + hold + 1])).toBe(1)
    expect(await scripts.release(keys, [t0 + hold + 2])).toBe(0)
    expect(await redis.hlen(keys[0]!)).toBe(0)
    expect(await redis.hlen(keys[2]!)).toBe(0)
  })

  test("after the earliest hold is bought, later holds still expire exactly on time", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await checkout("bob", 2, `${sale}.b`, t0 + 10)
    await purchase(`${sale}.a`, t0 + 1)
    expect(await scripts.release(keys, [t0 + hold])).toBe(0)
    expect((await checkout("cat", 2, `${sale}.c`, t0 + hold + 9))[0]).toBe(-4)
    expect((await checkout("cat", 2, `${sale}.c`, t0 + hold + 10))[0]).toBe(0)
  })

  test("does nothing for an uninitialised sale", async () => {
    expect(await scripts.release(keys, [t0])).toBe(0)
  })
})

describe("status.lua", () => {
  test("counts sold, live holds and attempts, releasing expired holds first", async () => {
    await init()
    await checkout("ann", 1, `${sale}.a`)
    await checkout("bob", 2, `${sale}.b`)
    await checkout("cat", 2)
    await purchase(`${sale}.a`)
    await purchase(`${sale}.zz`)
    expect(await status(t0 + 1)).toEqual([0, t0 + 1, 1, 1, 2, 1, 1, 1])
    expect(await status(t0 + hold)).toEqual([0, t0 + hold, 1, 0, 2, 1, 1, 1])
  })

  test("wrong_sale and not_ready as for checkout", async () => {
    expect(await status()).toEqual([-11])
    await init()
    expect(await status(t0 + period)).toEqual([-10, String(sale + 1)])
  })
})

describe("init_sale.lua", () => {
  test("rebuilds sold items, live holds, user counts and counters from a snapshot", async () => {
    const snapshot = [5, 6, 1, 2, 1, 3, "ann", `${sale}.s`, t0 - 10, 1, 1, "ann", `${sale}.h`, t0 + 100]
    expect(await init(t0, sale, "rebuild", snapshot)).toBe(1)
    expect(await status()).toEqual([0, t0, 1, 1, 5, 6, 1, 2])
    expect((await checkout("bob", 3))[0]).toBe(-3)
    expect((await checkout("bob", 1))[0]).toBe(-4)
    expect((await checkout("ann", 2))[0]).toBe(-5)
    expect(await purchase(`${sale}.h`)).toEqual([0, 1, "ann", t0])
    expect(await purchase(`${sale}.s`)).toEqual([-7])
  })

  test("a store that has an item sold and held, or held twice, rebuilds it sold, or held by the later hold only", async () => {
    const snapshot = [0, 0, 0, 0, 1, 3, "ann", `${sale}.s`, t0 - 10, 3, 3, "bob", `${sale}.h3`, t0 + 100, 1, "cat", `${sale}.old`, t0 + 1, 1, "dan", `${sale}.new`, t0 + 100]
    expect(await init(t0, sale, "rebuild", snapshot)).toBe(1)
    expect(await status()).toEqual([0, t0, 1, 1, 0, 0, 0, 0])
    expect(await purchase(`${sale}.old`)).toEqual([-6])
    expect(await purchase(`${sale}.h3`)).toEqual([-6])
    expect(await purchase(`${sale}.new`)).toEqual([0, 1, "dan", t0])
    expect(await redis.hget(keys[2]!, "cat")).toBeNull()
  })

  test("does nothing if the sale is already initialised", async () => {
    await init()
    await checkout("ann", 1)
    expect(await init()).toBe(0)
    expect(await redis.hget(keys[4]!, "c_ok")).toBe("1")
  })

  test("refuses to initialise a sale empty once it has started", async () => {
    expect(await init(t0, sale, "empty")).toBe(-1)
    expect(await init(t0 - period, sale, "empty")).toBe(1)
  })
})

describe("a sale split into shards (shard_*.lua)", () => {
  // Two shards: shard 0 holds items 1 and 3, shard 1 item 2; both users are counted on shard 1.
  const [item0, user1] = [saleKeys(`${sale}:0`), saleKeys(`${sale}:1`)]
  const initShard = (k: number, users: (string | number)[] = [0]) => scripts.initSale(saleKeys(`${sale}:${k}`), [t0, sale, period, "rebuild-shard", 0, 0, 0, 0, 0, 0, ...users])
  /** Step 1 of one checkout: [status, code, expiry], or the whole reply when the call decided nothing. */
  const take = (user: string, item: number, code: string, flags = "", at = t0, keys = item0, shard = 0) =>
    scripts.shardHold(keys, [at, sale, period, items, hold, 2, shard, item, user, code, flags]).then((r) => (r[0] === 0 ? [r[3], r[4], r[5]] : r))
  /** Step 2: [status, codes to ask about]. */
  const slot = (user: string, code: string, at = t0, flags = "") => scripts.shardSlot(user1, ["", sale, period, limit, user, code, at + hold, at, flags]).then((r) => (r[0] === 0 ? [r[1], r[2]] : r))
  /** Step 3 on shard 0: the request's status. */
  const settle = (item: number, user: string, code: string, verdict: number, at = t0) => scripts.shardSettle(item0, [at, sale, period, item, user, code, verdict]).then((r) => (r[0] === 0 ? r[2] : r[0]))
  beforeEach(async () => {
    await initShard(0)
    await initShard(1)
  })

  test("a free item is held tentatively: not yet held for anyone's purchase, refused to others, and in flight for its own user", async () => {
    expect(await take("ann", 1, `${sale}.A-ann-1`)).toEqual([2, `${sale}.A-ann-1`, t0 + hold])
    expect((await scripts.purchase(item0, [t0, sale, period, hold, `${sale}.A-ann-1`]))[3]).toBe(-6)
    expect(await take("bob", 1, `${sale}.A-bob-1`)).toEqual([-4, "", 0])
    expect(await take("ann", 1, `${sale}.A-ann-2`)).toEqual([-13, `${sale}.A-ann-1`, 0])
    expect(await take("ann", 1, `${sale}.A-ann-2`, "w")).toEqual([-4, "", 0])
  })

  test("slot then settle makes it a hold, bought once; a refused slot sends the item back to stock", async () => {
    await take("ann", 1, "c1")
    expect(await slot("ann", "c1")).toEqual([0, ""])
    expect(await settle(1, "ann", "c1", 0)).toBe(0)
    expect((await scripts.purchase(item0, [t0, sale, period, hold, "c1"])).slice(3)).toEqual([0, 1, "ann"])
    await take("ann", 3, "c3")
    expect(await slot("ann", "c3")).toEqual([0, ""])
    await take("ann", 2, "c2", "", t0, user1, 1)
    expect(await slot("ann", "c2")).toEqual([-5, ""])
    expect(await scripts.shardSettle(user1, [t0, sale, period, 2, "ann", "c2", -5]).then((r) => r[2])).toBe(-5)
    expect(await take("bob", 2, "c2b", "", t0, user1, 1)).toEqual([2, "c2b", t0 + hold])
  })

  test("a checkout whose slot step failed is abandoned: the item goes back to stock and nothing is journaled", async () => {
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
    expect((await scripts.shardVerify(item0, [later, sale, period, "c1", "c3"])).slice(1)).toEqual(["r", "r"])
    expect(await scripts.shardUnslot(user1, ["", sale, period, "ann", "c1", "r", "ann", "c3", "r"])).toBe(2)
    expect(await slot("ann", "c-next", later)).toEqual([0, ""])
    // The items went back to stock with the expiry.
    expect(await take("bob", 1, "b1", "", later)).toEqual([2, "b1", later + hold])
  })

  test("a bought hold past its expiry stays counted: the item shard says bought, and the user is refused", async () => {
    for (const [item, code] of [[1, "c1"], [3, "c3"]] as const) {
      await take("ann", item, code)
      await slot("ann", code)
      await settle(item, "ann", code, 0)
    }
    await scripts.purchase(item0, [t0, sale, period, hold, "c1"])
    const later = t0 + hold
    expect(await slot("ann", "c-next", later)).toEqual([-14, "c1,c3"])
    expect((await scripts.shardVerify(item0, [later, sale, period, "c1", "c3"])).slice(1)).toEqual(["p", "r"])
    await scripts.shardUnslot(user1, ["", sale, period, "ann", "c1", "p", "ann", "c3", "r"])
    await slot("ann", "c-next", later)
    expect(await slot("ann", "c-after", later, "x")).toEqual([-5, ""])
  })

  test("a sold-out shard asks for the others; with them it answers sold_out, without item_sold", async () => {
    for (const [item, code] of [[1, "c1"], [3, "c3"]] as const) {
      await take(`u${item}`, item, code)
      await settle(item, `u${item}`, code, 0)
      await scripts.purchase(item0, [t0, sale, period, hold, code])
    }
    expect(await take("bob", 1, "x")).toEqual([-12, "", 0])
    expect(await take("bob", 1, "x", "f")).toEqual([-2, "", 0])
    expect(await take("bob", 1, "x", "n")).toEqual([-3, "", 0])
  })

  test("a slot already listed (the shard was rebuilt while the hold was tentative) is decided again, against the others", async () => {
    await redis.del(user1[4]!)
    await initShard(1, [1, "ann", `2|c1:${t0 + hold}|c3:${t0 + hold}`])
    expect(await slot("ann", "c3")).toEqual([0, ""])
    await redis.del(user1[4]!)
    await initShard(1, [1, "ann", `3|c1:${t0 + hold}|c3:${t0 + hold}|c4:${t0 + hold}`])
    expect(await slot("ann", "c4")).toEqual([-5, ""])
    expect(await redis.hget(user1[2]!, "ann")).toBe(`2|c1:${t0 + hold}|c3:${t0 + hold}`)
  })

  test("a listed slot decided again at the limit asks about the user's expired holds before refusing", async () => {
    await redis.del(user1[4]!)
    await initShard(1, [1, "ann", `3|c1:${t0 - 1}|c3:${t0 + hold}|c4:${t0 + hold}`])
    expect(await slot("ann", "c4")).toEqual([-14, "c1"])
    expect(await slot("ann", "c4", t0, "x")).toEqual([-5, ""])
  })
})
