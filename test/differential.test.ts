/**
 * The two engines check each other: random sequences of checkouts, purchases, status reads and clock
 * advances run against the Redis engine (Lua scripts, PostgreSQL ledger) and the embedded engine (JS
 * rules, SQLite). Every operation must have the same outcome, and the final state and the kept rows
 * must be the same, units included. Codes are random in both, so each engine's codes are compared by the
 * order they were first issued in.
 *
 * Three kinds of sale: the recurring sale of one unit per item (the contest's), a recurring sale whose
 * catalog gives items several units and per-user limits, and planned sales with their own items, limits
 * and hold times, a gap between them and boundaries the clock crosses. The Redis engine runs each with
 * sales whole and split into 3 shards (SALE_SHARDS=3, src/redis/shards.ts), whose kept rows have no order
 * across shards, so there they are compared as sets.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test"
import fc from "fast-check"
import { harness, type Harness } from "./support/harness"
import type { Engine } from "../src/sale/engine"
import { fixedCatalog, type SaleItem } from "../src/sale/catalog"

const runs = Number(process.env.DIFFERENTIAL_RUNS ?? 2000)
const periodMs = 60_000

type Op =
  | { op: "checkout"; user: number; item: number }
  | { op: "purchase"; ref: number }
  | { op: "release"; ref: number }
  | { op: "bogus"; sale: number }
  | { op: "advance"; ms: number }
  | { op: "status" }

/** A kind of sale: its configuration, the item ids checkouts pick from, and how many runs it gets. */
type Scenario = {
  name: string
  config: { saleItems: number; userLimit: number; salePeriodSeconds: number; holdSeconds: number; saleSchedule?: "planned" }
  catalog?: SaleItem[]
  items: number[]
  runs: number
  /** Planned sales: created at the start of each run, relative to it. */
  planned?: (start: number) => { name: string; startsAt: number; endsAt: number; userLimit: number; holdMs: number; items: SaleItem[] }[]
}

const item = (id: number, stock: number, perUser: number): SaleItem => ({ id, name: `Item ${id}`, image: `/i/${id}.jpg`, stock, perUser })

const scenarios: Scenario[] = [
  { name: "recurring sales of one unit per item", config: { saleItems: 3, userLimit: 2, salePeriodSeconds: 60, holdSeconds: 10 }, items: [0, 1, 2, 3, 4], runs },
  {
    name: "recurring sales whose items have several units and per-user limits",
    config: { saleItems: 3, userLimit: 3, salePeriodSeconds: 60, holdSeconds: 10 },
    catalog: [item(1, 1, 1), item(2, 2, 2), item(3, 3, 1)],
    items: [0, 1, 2, 3, 4],
    runs: Math.ceil(runs / 4),
  },
  {
    name: "planned sales with their own items, limits and hold times, and a gap between them",
    config: { saleItems: 3, userLimit: 2, salePeriodSeconds: 60, holdSeconds: 10, saleSchedule: "planned" },
    items: [1, 5, 7, 8, 9],
    runs: Math.ceil(runs / 4),
    planned: (start) => [
      { name: "First", startsAt: start, endsAt: start + 20_000, userLimit: 2, holdMs: 10_000, items: [item(5, 2, 1), item(7, 1, 1), item(9, 3, 2)] },
      { name: "Second", startsAt: start + 40_000, endsAt: start + 60_000, userLimit: 1, holdMs: 5_000, items: [item(7, 2, 2), item(8, 1, 1)] },
    ],
  },
]

const opArb = (items: number[]): fc.Arbitrary<Op> =>
  fc.oneof(
    { weight: 6, arbitrary: fc.record({ op: fc.constant("checkout" as const), user: fc.integer({ min: 0, max: 2 }), item: fc.constantFrom(...items) }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant("purchase" as const), ref: fc.integer({ min: 0, max: 7 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("bogus" as const), sale: fc.integer({ min: -1, max: 3 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("release" as const), ref: fc.integer({ min: 0, max: 7 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant("advance" as const), ms: fc.constantFrom(1, 999, 4_999, 5_000, 9_999, 10_000, 10_001, 20_000, 30_000, 59_999, 60_000, 120_000) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant("status" as const) }) },
  )

/** What /status says, with the sale by id (its definition holds functions). */
const statusOf = async (engine: Engine) => {
  const { sale, ...rest } = await engine.status()
  return { ...rest, saleId: sale?.id ?? null, name: sale?.name ?? null }
}

/** One engine under test: its clock, the codes it issued (in order), labels for comparing them, and this run's planned sale ids. */
type Side = { h: Harness; engine: Engine; issued: string[]; labels: Map<string, string>; planned: number[] }

const label = (side: Side, code: string | null | undefined) => {
  if (!code) return code ?? null
  if (!side.labels.has(code)) side.labels.set(code, `code#${side.labels.size}`)
  return side.labels.get(code)!
}
/** A kept code as labelled while the engines ran; one never issued (a bogus purchase) is the same text on both sides. */
const keptLabel = (side: Side, code: string | null | undefined) => (code ? (side.labels.get(code) ?? code) : null)

/** A code no checkout issued, of a sale near the current one: recurring sales back from now, or this run's planned ones. */
function bogusCode(side: Side, back: number): string {
  const saleNow = Math.floor(side.h.clock.now / periodMs)
  const sale = side.planned.length > 0 ? (side.planned[back] ?? (back < 0 ? 1 : side.planned[0]! + 1000)) : saleNow - back
  return `${sale}.AAAAAAAAAAAAAAAAAAAAAA`
}

async function apply(side: Side, op: Op): Promise<unknown> {
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
      return side.engine.purchase(code)
    }
    case "bogus":
      return side.engine.purchase(bogusCode(side, op.sale))
    case "release": {
      // An operator's release by hand: the same answer, and the same state after, on every engine.
      const code = side.issued[op.ref]
      if (code === undefined) return "no such code yet"
      try {
        const released = await side.engine.operator.releaseHold(code, null)
        return { ...released, code: label(side, code) }
      } catch (error) {
        return { refused: (error as { code?: string }).code ?? String(error) }
      }
    }
    case "advance":
      await side.h.moveTo(side.h.clock.now + op.ms)
      return op.ms
    case "status":
      return statusOf(side.engine)
  }
}

const ms = (value: unknown) => (value === null || value === undefined ? null : value instanceof Date ? value.getTime() : Date.parse(String(value)))

/** The rows kept for these sales, in the order they were decided, with codes labelled. */
async function kept(side: Side, sales: string, unordered: boolean) {
  await side.h.drained()
  // Decision order within each sale: stream entry ids are ordered within one sale's stream only.
  const order = side.h.kind === "redis" ? "sale_id, split_part(event_id, '-', 1)::bigint, split_part(event_id, '-', 2)::bigint" : "sale_id, id"
  const checkouts = await side.h.query(`select sale_id, user_id, item_id, outcome, code, unit, expires_at, created_at from checkout_attempts where ${sales} order by ${order}`)
  const attempts = await side.h.query(`select sale_id, code, outcome, user_id, item_id, unit, created_at from purchase_attempts where ${sales} order by ${order}`)
  const purchases = await side.h.query(`select sale_id, item_id, unit, user_id, code, purchased_at from purchases where ${sales} order by sale_id, item_id, unit`)
  const n = (v: unknown) => (v === null ? null : Number(v))
  const rows = {
    checkouts: checkouts.map((r) => [Number(r.sale_id), r.user_id, Number(r.item_id), r.outcome, keptLabel(side, r.code), n(r.unit), ms(r.expires_at), ms(r.created_at)]),
    attempts: attempts.map((r) => [Number(r.sale_id), keptLabel(side, r.code), r.outcome, r.user_id ?? null, n(r.item_id), n(r.unit), ms(r.created_at)]),
    purchases: purchases.map((r) => [Number(r.sale_id), Number(r.item_id), Number(r.unit), r.user_id, keptLabel(side, r.code), ms(r.purchased_at)]),
  }
  if (!unordered) return rows
  const sorted = (list: unknown[][]) => list.map((row) => JSON.stringify(row)).sort()
  return { checkouts: sorted(rows.checkouts), attempts: sorted(rows.attempts), purchases: sorted(rows.purchases) }
}

for (const scenario of scenarios) {
  for (const shards of [1, 3]) {
    describe(`${scenario.name}${shards === 1 ? "" : `, split into ${shards} shards`}`, () => {
      let redis: Harness
      let embedded: Harness
      let nextStart = 0

      beforeAll(async () => {
        const catalog = scenario.catalog && fixedCatalog(scenario.catalog)
        redis = await harness({ ...scenario.config, saleShards: shards }, "redis", { catalog })
        embedded = await harness(scenario.config, "embedded", { catalog })
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
            const side: Side = { h, engine: h.engine, issued: [], labels: new Map(), planned: [] }
            for (const sale of scenario.planned?.(start) ?? []) {
              const view = await h.engine.operator.create(() => ({ sale }), null)
              side.planned.push(view.id as number)
            }
            await h.moveTo(start)
            return side
          }),
        )
        const [r, e] = sides as [Side, Side]
        // Both engines gave the planned sales the same ids: a sale's id is part of every outcome.
        expect(e.planned).toEqual(r.planned)
        for (const [i, op] of ops.entries()) {
          const [a, b] = [await apply(r, op), await apply(e, op)]
          expect({ step: i, op, outcome: b }).toEqual({ step: i, op, outcome: a })
        }
        expect(await statusOf(e.engine)).toEqual(await statusOf(r.engine))
        const fromSale = Math.floor(start / periodMs) - 4
        const toSale = Math.floor(r.h.clock.now / periodMs) + 1
        const sales = r.planned.length > 0 ? `sale_id in (${r.planned.join(", ")})` : `sale_id between ${fromSale} and ${toSale}`
        expect(await kept(e, sales, shards > 1)).toEqual(await kept(r, sales, shards > 1))
        await r.h.forget(r.planned.length > 0 ? r.planned : Array.from({ length: toSale - fromSale + 1 }, (_, i) => fromSale + i))
      }

      if (!scenario.planned && !scenario.catalog) {
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
            { op: "bogus", sale: 1 },
            { op: "status" },
          ])
        })

        test("regression: decisions in two sales in the same millisecond keep their order within each sale", async () => {
          await runBoth([
            { op: "checkout", user: 0, item: 0 },
            { op: "advance", ms: 10_001 },
            { op: "checkout", user: 1, item: 1 },
            { op: "purchase", ref: 0 },
            { op: "bogus", sale: 1 },
            { op: "advance", ms: 59_999 },
          ])
        })
      }

      if (scenario.planned) {
        test("regression: a checkout a millisecond before a sale opens is no_active_sale naming it, on the node's clock", async () => {
          await runBoth([
            { op: "advance", ms: 30_000 },
            { op: "advance", ms: 9_999 },
            { op: "checkout", user: 0, item: 1 },
            { op: "checkout", user: 0, item: 7 },
            { op: "advance", ms: 1 },
            { op: "checkout", user: 0, item: 7 },
          ])
        })

        test("regression: a unit bought and checked out again by its buyer within per_user, then the gap and the next sale", async () => {
          await runBoth([
            { op: "checkout", user: 0, item: 9 },
            { op: "purchase", ref: 0 },
            { op: "checkout", user: 0, item: 9 },
            { op: "checkout", user: 1, item: 9 },
            { op: "checkout", user: 2, item: 9 },
            { op: "advance", ms: 20_000 },
            { op: "checkout", user: 0, item: 7 },
            { op: "purchase", ref: 1 },
            { op: "advance", ms: 20_000 },
            { op: "checkout", user: 0, item: 7 },
            { op: "checkout", user: 0, item: 8 },
            { op: "status" },
          ])
        })
      }

      const count = shards === 1 ? scenario.runs : Math.ceil(scenario.runs / 4)
      test(`both engines agree on ${count} random sequences of checkouts, purchases and clock advances`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.array(opArb(scenario.items), { minLength: 1, maxLength: 30 }), (ops) => runBoth(ops)),
          // Split sales run a quarter as many: the same rules through more script calls, within the suite's time.
          { numRuns: count },
        )
      }, 600_000)
    })
  }
}
