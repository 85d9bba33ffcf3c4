/**
 * The audit of a sale: what the live state (Redis, or the embedded engine's memory) says was sold and held,
 * and by whom, against what the durable store kept. Both engines read their live state into a LiveView and the
 * store into a SaleSnapshot (sale/records.ts); the comparison is here, once. Pure.
 */
import type { SaleSnapshot } from "./records"

/** A unit sold (`at`: when) or held (`at`: its expiry). */
export type LiveUnit = { itemId: number; unit: number; userId: string; code: string; at: number }

export type Counters = { checkouts: { accepted: number; rejected: number }; purchases: { accepted: number; rejected: number } }

/** A sale as its live state has it, read once it is settled (every hold expired, nothing waiting to be written). */
export type LiveView = {
  sold: LiveUnit[]
  /** Holds live at the audit's time. */
  holds: LiveUnit[]
  /** Each touched item's counts, as the live state keeps them beside its units. */
  items: Map<number, { sold: number; held: number }>
  /** Each user's purchases plus live holds. */
  users: Map<string, number>
  counters: Counters
  /** When the live state was last rebuilt from the durable store during the sale, if it was. */
  rebuiltAt: number | null
}

/** One thing the two sides disagree on: `live` and `kept` are what each says (null: nothing). */
export type Difference = { kind: "sold" | "hold" | "item" | "user" | "counter"; key: string; live: unknown; kept: unknown }

export type Audit = {
  saleId: number
  at: number
  trigger: "auto" | "operator"
  rebuiltAt: number | null
  /** What was compared: how much of each the store kept. */
  checked: { units_sold: number; live_holds: number; items: number; users: number }
  /** How many differences there were; `differences` lists the first ones. */
  count: number
  differences: Difference[]
}

/** Differences listed in full; beyond, only counted. */
const listed = 1000

/** Compares a sale's live state with what the store kept of it at `now`. */
export function auditSale(saleId: number, live: LiveView, kept: SaleSnapshot, now: number, trigger: Audit["trigger"]): Audit {
  const differences: Difference[] = []
  let count = 0
  const differ = (d: Difference) => {
    count++
    if (differences.length < listed) differences.push(d)
  }

  const byUnit = (units: { itemId: number; unit: number; userId: string; code: string }[]) => new Map(units.map((u) => [`item ${u.itemId} unit ${u.unit}`, { code: u.code, user_id: u.userId }]))
  const compareUnits = (kind: "sold" | "hold", liveUnits: LiveUnit[], keptUnits: SaleSnapshot["sold"]) => {
    const a = byUnit(liveUnits)
    const b = byUnit(keptUnits)
    for (const [key, l] of a) {
      const k = b.get(key)
      if (!k || k.code !== l.code || k.user_id !== l.user_id) differ({ kind, key, live: l, kept: k ?? null })
    }
    for (const [key, k] of b) if (!a.has(key)) differ({ kind, key, live: null, kept: k })
  }
  const keptHolds = kept.holds.filter((h) => h.at > now)
  compareUnits("sold", live.sold, kept.sold)
  compareUnits("hold", live.holds.filter((h) => h.at > now), keptHolds)

  // Counts beside the units: an item's sold and held, a user's purchases plus live holds.
  const keptItems = new Map<number, { sold: number; held: number }>()
  const keptUsers = new Map<string, number>()
  const add = (u: { itemId: number; userId: string }, field: "sold" | "held") => {
    const item = keptItems.get(u.itemId) ?? { sold: 0, held: 0 }
    item[field]++
    keptItems.set(u.itemId, item)
    keptUsers.set(u.userId, (keptUsers.get(u.userId) ?? 0) + 1)
  }
  for (const s of kept.sold) add(s, "sold")
  for (const h of keptHolds) add(h, "held")
  const none = { sold: 0, held: 0 }
  for (const id of new Set([...live.items.keys(), ...keptItems.keys()])) {
    const l = live.items.get(id) ?? none
    const k = keptItems.get(id) ?? none
    if (l.sold !== k.sold || l.held !== k.held) differ({ kind: "item", key: `item ${id}`, live: l, kept: k })
  }
  for (const user of new Set([...live.users.keys(), ...keptUsers.keys()])) {
    const l = live.users.get(user) ?? 0
    const k = keptUsers.get(user) ?? 0
    if (l !== k) differ({ kind: "user", key: `user ${user}`, live: l, kept: k })
  }
  const counters: [string, number, number][] = [
    ["checkouts.accepted", live.counters.checkouts.accepted, kept.checkouts.accepted],
    ["checkouts.rejected", live.counters.checkouts.rejected, kept.checkouts.rejected],
    ["purchases.accepted", live.counters.purchases.accepted, kept.purchases.accepted],
    ["purchases.rejected", live.counters.purchases.rejected, kept.purchases.rejected],
  ]
  for (const [key, l, k] of counters) if (l !== k) differ({ kind: "counter", key, live: l, kept: k })

  return {
    saleId,
    at: now,
    trigger,
    rebuiltAt: live.rebuiltAt,
    checked: { units_sold: kept.sold.length, live_holds: keptHolds.length, items: keptItems.size, users: keptUsers.size },
    count,
    differences,
  }
}

/** An audit as the API shows it and the store keeps it (sale_audits.result). */
export function auditView(a: Audit): Record<string, unknown> {
  return {
    sale_id: a.saleId,
    at: new Date(a.at).toISOString(),
    trigger: a.trigger,
    ok: a.count === 0,
    rebuilt: a.rebuiltAt !== null,
    rebuilt_at: a.rebuiltAt === null ? null : new Date(a.rebuiltAt).toISOString(),
    checked: a.checked,
    differences_count: a.count,
    differences: a.differences,
  }
}

/** An audit read back from its kept view. */
export function auditOfView(v: Record<string, unknown>): Audit {
  return {
    saleId: Number(v.sale_id),
    at: Date.parse(String(v.at)),
    trigger: v.trigger === "operator" ? "operator" : "auto",
    rebuiltAt: v.rebuilt_at ? Date.parse(String(v.rebuilt_at)) : null,
    checked: v.checked as Audit["checked"],
    count: Number(v.differences_count),
    differences: v.differences as Difference[],
  }
}
