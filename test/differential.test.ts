/**
 * The two engines check each other: random sequences of checkouts, purchases, status reads and clock
 * advances run against the Redis engine (Lua scripts, PostgreSQL ledger) and the embedded engine (JS
 * rules, SQLite). Every operation must have the same outcome, and the final state and the kept rows
 * must be the same. Codes are random in both, so each engine's codes are compared by the order they
 * were first issued in. The Redis engine runs twice: with each sale whole, and split into 3 shards
 * (SALE_SHARDS=3, src/redis/shards.ts), whose kept rows have no order across shards, so there they are
 * compared as sets.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import fc from "fast-check"
import { harness, type Harness } from "./support/harness"
import type { Engine } from "../src/sale/engine"

const config = { saleItems: 3, userLimit: 2, salePeriodSeconds: 60, holdSeconds: 10 }
const periodMs = config.salePeriodSeconds * 1000
const runs = Number(process.env.DIFFERENTIAL_RUNS ?? 2000)

type Op =
  | { op: "checkout"; user: number; item: number }
  | { op: "purchase"; ref: number }
  | { op: "bogus"; salesBack: number }
  | { op: "advance"; ms: number }
  | { op: "status" }

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant("checkout" as const), user: fc.integer({ min: 0, max: 2 }), item: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("purchase" as const), ref: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("bogus" as const), salesBack: fc.integer({ min: -1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.constantFrom(1, 999, 9_999, 10_000, 10_001, 30_000, 59_999, 60_000, 120_000) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant("status" as const) }) },
)

/** What /status says, with the sale by id (its definition holds functions). */
const statusOf = async (engine: Engine) => {
  const { sale, ...rest } = await engine.status()
  return { ...rest, saleId: sale?.id ?? null, name: sale?.name ?? null }
}

/** One engine under test: its clock, the codes it issued (in order), and labels for comparing them. */
type Side = { h: Harness; engine: Engine; issued: string[]; labels: Map<string, string> }

const label = (side: Side, code: string | null | undefined) => {
  if (!code) return code ?? null
  if (!side.labels.has(code)) side.labels.set(code, `code#${side.labels.size}`)
  return side.labels.get(code)!
}
/** A kept code as labelled while the engines ran; one never issued (a bogus purchase) is the same text on both sides. */
const keptLabel = (side: Side, code: string | null | undefined) => (code ? (side.labels.get(code) ?? code) : null)

async function apply(side: Side, op: Op): Promise<unknown> {
  const saleNow = Math.floor(side.h.clock.now / periodMs)
  switch (op.op) {
    case "checkout": {
      const r = await side.engine.checkout(`user${op.user}`, op.item)
      if (!r.ok) return r
      if (!side.issued.includes(r.code)) side.issued.push(r.code)
      return { ...r, code: label(side, r.code) }
    }
    case "purchase": {
      const code = side.issued[op.ref]
      if (code === undefined) return "no such code yet"
      const r = await side.engine.purchase(code)
      return r
    }
    case "bogus":
      return side.engine.purchase(`${saleNow - op.salesBack}.AAAAAAAAAAAAAAAAAAAAAA`)
    case "advance":
      await side.h.moveTo(side.h.clock.now + op.ms)
      return op.ms
    case "status":
      return statusOf(side.engine)
  }
}

const ms = (value: unknown) => (value === null || value === undefined ? null : value instanceof Date ? value.getTime() : Date.parse(String(value)))

/** The rows kept for these sales, in the order they were decided, with codes labelled. */
async function kept(side: Side, fromSale: number, toSale: number, unordered: boolean) {
  await side.h.drained()
  // Decision order within each sale: stream entry ids are ordered within one sale's stream only.
  const order = side.h.kind === "redis" ? "sale_id, split_part(event_id, '-', 1)::bigint, split_part(event_id, '-', 2)::bigint" : "sale_id, id"
  const checkouts = await side.h.query(`select sale_id, user_id, item_id, outcome, code, expires_at, created_at from checkout_attempts where sale_id between ${fromSale} and ${toSale} order by ${order}`)
  const attempts = await side.h.query(`select sale_id, code, outcome, user_id, item_id, created_at from purchase_attempts where sale_id between ${fromSale} and ${toSale} order by ${order}`)
  const purchases = await side.h.query(`select sale_id, item_id, user_id, code, purchased_at from purchases where sale_id between ${fromSale} and ${toSale} order by sale_id, item_id`)
  const rows = {
    checkouts: checkouts.map((r) => [Number(r.sale_id), r.user_id, Number(r.item_id), r.outcome, keptLabel(side, r.code), ms(r.expires_at), ms(r.created_at)]),
    attempts: attempts.map((r) => [Number(r.sale_id), keptLabel(side, r.code), r.outcome, r.user_id ?? null, r.item_id === null ? null : Number(r.item_id), ms(r.created_at)]),
    purchases: purchases.map((r) => [Number(r.sale_id), Number(r.item_id), r.user_id, keptLabel(side, r.code), ms(r.purchased_at)]),
  }
  if (!unordered) return rows
  const sorted = (list: unknown[][]) => list.map((row) => JSON.stringify(row)).sort()
  return { checkouts: sorted(rows.checkouts), attempts: sorted(rows.attempts), purchases: sorted(rows.purchases) }
}

for (const shards of [1, 3]) describe(shards === 1 ? "whole sales" : `sales split into ${shards} shards`, () => {
  let redis: Harness
  let embedded: Harness
  let nextStart = 0

  beforeAll(async () => {
    redis = await harness({ ...config, saleShards: shards }, "redis")
    embedded = await harness(config, "embedded")
    nextStart = Math.max(redis.clock.now, embedded.clock.now)
  })
  afterAll(async () => {
    await redis.close()
    await embedded.close()
  })

  async function runBoth(ops: Op[]): Promise<void> {
    // Each run gets its own sales, far from every earlier run's, so the engines' history does not leak in.
    const start = nextStart + 1000
    nextStart = start + 1000 * periodMs
    const sides: Side[] = await Promise.all(
      [redis, embedded].map(async (h) => {
        await h.moveTo(start)
        return { h, engine: h.engine, issued: [], labels: new Map() }
      }),
    )
    const [r, e] = sides as [Side, Side]
    for (const [i, op] of ops.entries()) {
      const [a, b] = [await apply(r, op), await apply(e, op)]
      expect({ step: i, op, outcome: b }).toEqual({ step: i, op, outcome: a })
    }
    expect(await statusOf(e.engine)).toEqual(await statusOf(r.engine))
    const fromSale = Math.floor(start / periodMs) - 4
    const toSale = Math.floor(r.h.clock.now / periodMs) + 1
    expect(await kept(e, fromSale, toSale, shards > 1)).toEqual(await kept(r, fromSale, toSale, shards > 1))
    await r.h.forget(Array.from({ length: toSale - fromSale + 1 }, (_, i) => fromSale + i))
  }

  test("regression: a hold bought just before it expires, then the clock passes the expiry", async () => {
    await runBoth([
      { op: "checkout", user: 0, item: 1 },
      { op: "advance", ms: 9_999 },
      { op: "purchase", ref: 0 },
      { op: "advance", ms: 1 },
      { op: "checkout", user: 1, item: 1 },
      { op: "status" },
    ])
  })

  test("regression: a hold made at the end of a sale is bought in the next, whose limit is fresh", async () => {
    await runBoth([
      { op: "advance", ms: 59_999 - 1000 },
      { op: "checkout", user: 0, item: 2 },
      { op: "checkout", user: 0, item: 3 },
      { op: "advance", ms: 1 },
      { op: "purchase", ref: 0 },
      { op: "checkout", user: 0, item: 2 },
      { op: "checkout", user: 0, item: 1 },
      { op: "checkout", user: 0, item: 3 },
      { op: "bogus", salesBack: 1 },
      { op: "status" },
    ])
  })

  test("regression: decisions in two sales in the same millisecond keep their order within each sale", async () => {
    await runBoth([
      { op: "checkout", user: 0, item: 0 },
      { op: "advance", ms: 10_001 },
      { op: "checkout", user: 1, item: 1 },
      { op: "purchase", ref: 0 },
      { op: "bogus", salesBack: 1 },
      { op: "advance", ms: 59_999 },
    ])
  })

  test(`both engines agree on ${shards === 1 ? runs : Math.ceil(runs / 4)} random sequences of checkouts, purchases and clock advances`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 30 }), (ops) => runBoth(ops)),
      // Split sales run a quarter as many: the same rules through more script calls, within the suite's time.
      { numRuns: shards === 1 ? runs : Math.ceil(runs / 4) },
    )
  }, 600_000)
})
