/**
 * The sale rules, on plain JS state: the reference implementation. The embedded engine runs them as
 * they are (one JS thread, so each decision is atomic); lua/*.lua decide the same in Redis, and the
 * differential test holds the two to identical outcomes, units, state and kept records.
 *
 * An item has `stock` units. A checkout holds one unit, the lowest free one; a purchase sells the held unit.
 * An expired hold returns its unit. Units in use are always at most the stock (an operator cannot lower the
 * stock below the highest unit sold or held), so the units handed out are 1..stock.
 */
import { isAccepted, type CheckoutOutcome, type PurchaseOutcome } from "./outcomes"
import type { CheckoutRecord, PurchaseRecord, SaleSnapshot } from "./records"
import type { SaleItems, Settings } from "./sales"

export type Held = { kind: "h"; itemId: number; unit: number; userId: string; code: string; expiresAt: number }
export type Sold = { kind: "p"; itemId: number; unit: number; userId: string; code: string; at: number }

/** One item's units: how many are sold and held, the lowest never handed out, and those handed out and returned (ascending). */
export type ItemUnits = { stock: number; perUser: number; sold: number; held: number; next: number; free: number[] }

/** One user's units of one item: purchases plus live holds, and the live hold's code (a user holds at most one unit of an item at a time). */
export type Holding = { count: number; code: string | null }

export type SaleState = {
  saleId: number
  settings: Settings
  items: SaleItems
  /** item id -> its units, made from the definition when first touched */
  units: Map<number, ItemUnits>
  /** `${item id}|${user id}` -> that user's units of that item */
  holdings: Map<string, Holding>
  /** code -> its live hold or its sale; expired holds are forgotten */
  codes: Map<string, Held | Sold>
  /** user id -> purchases plus live holds */
  users: Map<string, number>
  /** holds in order of expiry; a hold that was bought stays here until its time and is skipped then */
  expiries: Held[]
  expiriesHead: number
  stats: { sold: number; held: number; units: number; checkoutsOk: number; checkoutsRejected: number; purchasesOk: number; purchasesRejected: number }
}

export function emptySale(saleId: number, items: SaleItems, settings: Settings): SaleState {
  return {
    saleId,
    settings: { ...settings },
    items,
    units: new Map(),
    holdings: new Map(),
    codes: new Map(),
    users: new Map(),
    expiries: [],
    expiriesHead: 0,
    stats: { sold: 0, held: 0, units: items.units, checkoutsOk: 0, checkoutsRejected: 0, purchasesOk: 0, purchasesRejected: 0 },
  }
}

/** The item's units, or undefined for an id the sale does not have. */
export function unitsOf(sale: SaleState, itemId: number): ItemUnits | undefined {
  let units = sale.units.get(itemId)
  if (!units) {
    const position = sale.items.position(itemId)
    if (position < 0) return undefined
    const item = sale.items.at(position)
    units = { stock: item.stock, perUser: item.perUser, sold: 0, held: 0, next: 1, free: [] }
    sale.units.set(itemId, units)
  }
  return units
}

const holdingKey = (itemId: number, userId: string) => `${itemId}|${userId}`

/** The lowest free unit, taken. */
function takeUnit(units: ItemUnits): number {
  return units.free.length > 0 ? units.free.shift()! : units.next++
}

/** A unit back to stock, in order. */
function returnUnit(units: ItemUnits, unit: number): void {
  let i = units.free.length
  while (i > 0 && units.free[i - 1]! > unit) i--
  units.free.splice(i, 0, unit)
}

/** The highest unit of the item sold or held (0 if none): the stock cannot go below it. */
export function highestInUse(units: ItemUnits): number {
  let unit = units.next - 1
  let i = units.free.length - 1
  while (unit > 0 && i >= 0 && units.free[i] === unit) {
    unit--
    i--
  }
  return unit
}

function count(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by
  if (n <= 0) map.delete(key)
  else map.set(key, n)
}

function addHold(sale: SaleState, hold: Held): void {
  sale.codes.set(hold.code, hold)
  count(sale.users, hold.userId, 1)
  const key = holdingKey(hold.itemId, hold.userId)
  const holding = sale.holdings.get(key)
  if (holding) {
    holding.count++
    holding.code = hold.code
  } else sale.holdings.set(key, { count: 1, code: hold.code })
  // Holds mostly arrive in expiry order; keep the order if the clock steps back or the hold time changed.
  let i = sale.expiries.length
  while (i > sale.expiriesHead && sale.expiries[i - 1]!.expiresAt > hold.expiresAt) i--
  sale.expiries.splice(i, 0, hold)
}

/** Ends a live hold that was not bought: its unit goes back to stock and its user's count drops (expiry, or an operator's release). */
function endHold(sale: SaleState, hold: Held): void {
  sale.codes.delete(hold.code)
  const units = unitsOf(sale, hold.itemId)!
  units.held--
  returnUnit(units, hold.unit)
  count(sale.users, hold.userId, -1)
  const key = holdingKey(hold.itemId, hold.userId)
  const holding = sale.holdings.get(key)
  if (holding) {
    holding.count--
    if (holding.code === hold.code) holding.code = null
    if (holding.count <= 0) sale.holdings.delete(key)
  }
  sale.stats.held--
}

/**
 * A sale's live state from what the durable store kept of it (lua/init_sale.lua does the same in Redis). A unit
 * kept as sold stays sold; of two holds of one unit (a store read just as one expired), the later one is kept.
 */
export function restoreSale(saleId: number, items: SaleItems, settings: Settings, snapshot: SaleSnapshot): SaleState {
  const sale = emptySale(saleId, items, settings)
  const inUse = new Map<number, Set<number>>()
  const use = (itemId: number, unit: number) => {
    let units = inUse.get(itemId)
    if (!units) inUse.set(itemId, (units = new Set()))
    if (units.has(unit)) return false
    units.add(unit)
    return true
  }
  for (const s of snapshot.sold) {
    const units = unitsOf(sale, s.itemId)
    if (!units || !use(s.itemId, s.unit)) continue
    const sold: Sold = { kind: "p", itemId: s.itemId, unit: s.unit, userId: s.userId, code: s.code, at: s.at }
    sale.codes.set(sold.code, sold)
    units.sold++
    count(sale.users, sold.userId, 1)
    const key = holdingKey(s.itemId, s.userId)
    const holding = sale.holdings.get(key) ?? { count: 0, code: null }
    holding.count++
    sale.holdings.set(key, holding)
    sale.stats.sold++
  }
  const latest = new Map<string, SaleSnapshot["holds"][number]>()
  for (const h of snapshot.holds) latest.set(`${h.itemId}|${h.unit}`, h)
  for (const h of snapshot.holds) {
    const units = unitsOf(sale, h.itemId)
    if (!units || latest.get(`${h.itemId}|${h.unit}`) !== h || !use(h.itemId, h.unit)) continue
    units.held++
    addHold(sale, { kind: "h", itemId: h.itemId, unit: h.unit, userId: h.userId, code: h.code, expiresAt: h.at })
    sale.stats.held++
  }
  // Units below the highest one in use that are not in use are free again.
  for (const [itemId, used] of inUse) {
    const units = unitsOf(sale, itemId)!
    units.next = Math.max(...used) + 1
    for (let unit = 1; unit < units.next; unit++) if (!used.has(unit)) units.free.push(unit)
  }
  sale.stats.checkoutsOk = snapshot.checkouts.accepted
  sale.stats.checkoutsRejected = snapshot.checkouts.rejected
  sale.stats.purchasesOk = snapshot.purchases.accepted
  sale.stats.purchasesRejected = snapshot.purchases.rejected
  return sale
}

/** An operator's release of a live hold by hand (lua/release_hold.lua): ended as if it expired now. */
export function releaseHold(sale: SaleState, now: number, code: string): { kind: "released"; hold: Held } | { kind: "bought" | "none" } {
  sweep(sale, now)
  const found = sale.codes.get(code)
  if (!found) return { kind: "none" }
  if (found.kind === "p") return { kind: "bought" }
  endHold(sale, found)
  return { kind: "released", hold: found }
}

/** Returns every hold expired at `now` to stock (lua/prelude.lua's sweep). */
export function sweep(sale: SaleState, now: number): number {
  let released = 0
  const queue = sale.expiries
  while (sale.expiriesHead < queue.length && queue[sale.expiriesHead]!.expiresAt <= now) {
    const hold = queue[sale.expiriesHead++]!
    if (sale.codes.get(hold.code) !== hold) continue
    endHold(sale, hold)
    released++
  }
  if (sale.expiriesHead > 1024 && sale.expiriesHead * 2 > queue.length) {
    sale.expiries = queue.slice(sale.expiriesHead)
    sale.expiriesHead = 0
  }
  return released
}

export type CheckoutDecision = { outcome: CheckoutOutcome; code: string; unit: number; expiresAt: number; record: CheckoutRecord }

/**
 * One checkout on a sale open at `now` (lua/checkout.lua decides each request of a batch the same way). The first
 * outcome that applies: unknown_item, repeated, sold_out, sale_paused, item_sold, item_reserved, user_limit,
 * then a new hold of the item's lowest free unit.
 */
export function checkout(sale: SaleState, now: number, itemId: number, userId: string, newCode: string): CheckoutDecision {
  sweep(sale, now)
  let outcome: CheckoutOutcome = "reserved"
  let code = ""
  let unit = 0
  let expiresAt = 0
  const units = unitsOf(sale, itemId)
  const holding = units && sale.holdings.get(holdingKey(itemId, userId))
  const live = holding?.code ? (sale.codes.get(holding.code) as Held) : undefined
  if (!units) outcome = "unknown_item"
  else if (live) {
    outcome = "repeated"
    code = live.code
    unit = live.unit
    expiresAt = live.expiresAt
  } else if (sale.stats.sold >= sale.stats.units) outcome = "sold_out"
  else if (sale.settings.paused) outcome = "sale_paused"
  else if (units.sold >= units.stock) outcome = "item_sold"
  else if (units.sold + units.held >= units.stock) outcome = "item_reserved"
  else if ((sale.users.get(userId) ?? 0) >= sale.settings.userLimit || (holding?.count ?? 0) >= units.perUser) outcome = "user_limit"
  else {
    code = newCode
    unit = takeUnit(units)
    expiresAt = now + sale.settings.holdMs
    units.held++
    addHold(sale, { kind: "h", itemId, unit, userId, code, expiresAt })
    sale.stats.held++
  }
  if (isAccepted(outcome)) sale.stats.checkoutsOk++
  else sale.stats.checkoutsRejected++
  const record: CheckoutRecord = { kind: "checkout", saleId: sale.saleId, userId, itemId, outcome, code: code || null, unit: unit || null, expiresAt: expiresAt || null, at: now }
  return { outcome, code, unit, expiresAt, record }
}

export type PurchaseDecision = { outcome: PurchaseOutcome; itemId: number; unit: number; userId: string; at: number; record: PurchaseRecord }

/** One purchase, once the caller has found the code's sale (lua/purchase.lua decides each code of a batch the same way). */
export function purchase(sale: SaleState, now: number, code: string): PurchaseDecision {
  sweep(sale, now)
  const state = sale.codes.get(code)
  let outcome: PurchaseOutcome = "code_not_found"
  if (state?.kind === "p") outcome = "code_used"
  else if (state?.kind === "h") {
    outcome = "purchased"
    const sold: Sold = { kind: "p", itemId: state.itemId, unit: state.unit, userId: state.userId, code, at: now }
    sale.codes.set(code, sold)
    const units = unitsOf(sale, state.itemId)!
    units.held--
    units.sold++
    const holding = sale.holdings.get(holdingKey(state.itemId, state.userId))
    if (holding?.code === code) holding.code = null
    sale.stats.held--
    sale.stats.sold++
  }
  if (outcome === "purchased") sale.stats.purchasesOk++
  else sale.stats.purchasesRejected++
  const record: PurchaseRecord = { kind: "purchase", saleId: sale.saleId, code, outcome, userId: state?.userId ?? null, itemId: state?.itemId ?? null, unit: state?.unit ?? null, at: now }
  return { outcome, itemId: state?.itemId ?? 0, unit: state?.unit ?? 0, userId: state?.userId ?? "", at: now, record }
}

/** Units of the item neither sold nor held. */
export function available(sale: SaleState, itemId: number): number {
  const units = sale.units.get(itemId)
  if (units) return units.stock - units.sold - units.held
  const position = sale.items.position(itemId)
  return position < 0 ? 0 : sale.items.at(position).stock
}

/** A lower stock for an item: refused (the unit in the way returned) below its highest unit sold or held. */
function setStock(sale: SaleState, itemId: number, stock: number): number | undefined {
  const units = unitsOf(sale, itemId)
  if (!units) return undefined
  const floor = highestInUse(units)
  if (stock < floor) return floor
  if (stock < units.stock) {
    units.free = units.free.filter((unit) => unit <= stock)
    units.next = Math.min(units.next, stock + 1)
  }
  sale.stats.units += stock - units.stock
  units.stock = stock
  return undefined
}

/** What only tightens in a change (pause, an end, a lower limit or stock), applied now; or the item and unit a lower stock cannot go below. */
export function tighten(sale: SaleState, change: { paused?: boolean; endedAt?: number; userLimit?: number; stocks?: { id: number; stock: number }[] }): { itemId: number; unit: number } | undefined {
  for (const { id, stock } of change.stocks ?? []) {
    const units = unitsOf(sale, id)
    if (units && stock < highestInUse(units)) return { itemId: id, unit: highestInUse(units) }
  }
  for (const { id, stock } of change.stocks ?? []) if (stock < (unitsOf(sale, id)?.stock ?? 0)) setStock(sale, id, stock)
  if (change.paused) sale.settings.paused = true
  if (change.endedAt !== undefined) sale.settings.endedAt = Math.min(change.endedAt, sale.settings.endedAt ?? change.endedAt)
  if (change.userLimit !== undefined) sale.settings.userLimit = Math.min(change.userLimit, sale.settings.userLimit)
  return undefined
}

/** A sale's definition as kept (settings and stocks), unless the state has a newer revision. A stock below a unit in use stays at that unit. */
export function applyDefinition(sale: SaleState, definition: { items: SaleItems } & Settings): void {
  if (definition.rev < sale.settings.rev) return
  sale.settings = { startsAt: definition.startsAt, endsAt: definition.endsAt, endedAt: definition.endedAt, paused: definition.paused, userLimit: definition.userLimit, holdMs: definition.holdMs, rev: definition.rev }
  sale.items = definition.items
  for (const [itemId, units] of sale.units) {
    const position = definition.items.position(itemId)
    const stock = position < 0 ? units.stock : definition.items.at(position).stock
    if (stock !== units.stock) setStock(sale, itemId, Math.max(stock, highestInUse(units)))
  }
  // Items never touched take their stock from the definition when first touched; the total follows it.
  let units = definition.items.units
  for (const [itemId, u] of sale.units) {
    const position = definition.items.position(itemId)
    units += u.stock - (position < 0 ? 0 : definition.items.at(position).stock)
  }
  sale.stats.units = units
}
