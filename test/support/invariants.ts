/**
 * The sale's invariants, checked in one place against what the durable store kept (PostgreSQL or SQLite, through
 * portable SQL) and, when given, against what the clients were answered and what the live state says. Every
 * suite that loads a sale (concurrency, faults, durability, cluster) and the bench use it; it returns the
 * violations as sentences, so a test expects none and the bench prints them.
 */
export type Query = (text: string) => Promise<Record<string, any>[]>

/** One answer a client saw: its status and JSON body. */
export type Answer = { status: number; body: any }

export type SaleCheck = {
  /** Purchases plus live holds one user may have in a sale. */
  userLimit: number
  /** Units of an item (default 1 each). */
  stock?: (saleId: number, itemId: number) => number
  /** Units of an item one user may have, purchases plus live holds (default 1 each). */
  perUser?: (saleId: number, itemId: number) => number
  /** The answers the clients saw: every success must be kept as answered. */
  answers?: { checkouts: Answer[]; purchases: Answer[] }
  /** How many answers of each outcome ("ok" for a success) the clients saw, when not every answer was kept (wrk counts them). */
  tallies?: { checkouts: Record<string, number>; purchases: Record<string, number> }
  /**
   * How the attempts kept compare with the answers: "exact", one row per answer and outcome; or, when some
   * requests' outcomes were never seen (cut off by a kill, or by the end of a load run), at least the answers of
   * each outcome are kept, and at most that many more rows in all.
   */
  attempts?: "exact" | { unanswered: { checkouts: number; purchases: number } }
  /** The sold count the live state reports (Redis or /status), per sale: it must equal the purchases kept. */
  liveSold?: Map<number, number>
  /** Items every one of which must be sold (a sell-out): their count. */
  soldOut?: number
  /** When live holds are counted against the limit; now by default. */
  now?: number
}

/** Answers that decided nothing, so nothing of them is kept: the sale could not decide, or the request never reached it. */
const undecided = new Set(["unavailable", "rate_limited", "invalid_request", "no_active_sale"])

/** Decisions answered, by outcome: "ok" for a success, else the error code. */
export function tally(answers: Answer[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const a of answers) {
    if (undecided.has(a.body?.error)) continue
    const key = a.status === 200 ? "ok" : a.body.error
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}

const ms = (value: unknown) => (value instanceof Date ? value.getTime() : typeof value === "number" ? value : Date.parse(String(value)))

/** Every violation of the sale's invariants, as sentences; [] when the sale is exact. */
export async function saleViolations(query: Query, check: SaleCheck): Promise<string[]> {
  const violations: string[] = []
  const stock = check.stock ?? (() => 1)
  const now = check.now ?? Date.now()
  // Every column, so that a store of a build before units (no unit: each sale was unit 1) can be checked too.
  const purchases = await query("select * from purchases")
  const holds = await query("select sale_id, item_id, user_id, code, expires_at from checkout_attempts where outcome = 'reserved'")

  // No item sold beyond its stock, no unit or code sold twice.
  const units = new Set<string>()
  for (const p of purchases) {
    const unit = `${p.sale_id}/${p.item_id}/${p.unit ?? 1}`
    if (units.has(unit)) violations.push(`unit ${unit} (sale/item/unit) sold twice`)
    units.add(unit)
  }
  const perItem = new Map<string, number>()
  const codes = new Map<string, number>()
  for (const p of purchases) {
    const item = `${p.sale_id}/${p.item_id}`
    perItem.set(item, (perItem.get(item) ?? 0) + 1)
    codes.set(p.code, (codes.get(p.code) ?? 0) + 1)
  }
  for (const [item, sold] of perItem) {
    const [sale, id] = item.split("/").map(Number) as [number, number]
    if (sold > stock(sale, id)) violations.push(`item ${id} of sale ${sale} sold ${sold} times, its stock is ${stock(sale, id)}`)
  }
  for (const [code, n] of codes) if (n > 1) violations.push(`code ${code} sold ${n} times`)

  // No user over the limit: purchases plus holds still live and not bought.
  const bought = new Set(purchases.map((p) => p.code as string))
  const perUser = new Map<string, number>()
  for (const p of purchases) perUser.set(`${p.sale_id}/${p.user_id}`, (perUser.get(`${p.sale_id}/${p.user_id}`) ?? 0) + 1)
  for (const h of holds) if (!bought.has(h.code) && ms(h.expires_at) > now) perUser.set(`${h.sale_id}/${h.user_id}`, (perUser.get(`${h.sale_id}/${h.user_id}`) ?? 0) + 1)
  for (const [user, n] of perUser) if (n > check.userLimit) violations.push(`user ${user} has ${n} purchases plus live holds, over USER_LIMIT ${check.userLimit}`)
  const perItem2 = new Map<string, number>()
  const add = (sale: unknown, user: unknown, item: unknown) => perItem2.set(`${sale}/${user}/${item}`, (perItem2.get(`${sale}/${user}/${item}`) ?? 0) + 1)
  for (const p of purchases) add(p.sale_id, p.user_id, p.item_id)
  for (const h of holds) if (!bought.has(h.code) && ms(h.expires_at) > now) add(h.sale_id, h.user_id, h.item_id)
  const limitOf = check.perUser ?? (() => 1)
  for (const [key, n] of perItem2) {
    const [sale, user, item] = key.split("/")
    if (n > limitOf(Number(sale), Number(item))) violations.push(`user ${user} has ${n} units of item ${item} of sale ${sale}, over its per_user ${limitOf(Number(sale), Number(item))}`)
  }

  if (check.soldOut !== undefined && purchases.length !== check.soldOut) violations.push(`${purchases.length} purchases kept, but the ${check.soldOut} items were sold out`)

  if (check.answers) {
    // Every success answered is kept as it was answered: a user may buy several units of an item, so count them.
    const heldCodes = new Set(holds.map((h) => h.code as string))
    const keptSales = new Map<string, number>()
    for (const p of purchases) keptSales.set(`${p.sale_id}/${p.item_id}/${p.user_id}`, (keptSales.get(`${p.sale_id}/${p.item_id}/${p.user_id}`) ?? 0) + 1)
    const answeredSales = new Map<string, number>()
    for (const p of check.answers.purchases) if (p.status === 200) answeredSales.set(`${p.body.sale_id}/${p.body.item.id}/${p.body.user_id}`, (answeredSales.get(`${p.body.sale_id}/${p.body.item.id}/${p.body.user_id}`) ?? 0) + 1)
    for (const [sale, n] of answeredSales) if ((keptSales.get(sale) ?? 0) < n) violations.push(`${n} sales of ${sale} (sale/item/user) were answered, ${keptSales.get(sale) ?? 0} are kept`)
    for (const c of check.answers.checkouts) if (c.status === 200 && !heldCodes.has(c.body.code)) violations.push(`the hold ${c.body.code} was answered but is not kept`)
    const sold = check.answers.purchases.filter((p) => p.status === 200).map((p) => `${p.body.sale_id}/${p.body.item.id}`)
    const answeredPerItem = new Map<string, number>()
    for (const item of sold) answeredPerItem.set(item, (answeredPerItem.get(item) ?? 0) + 1)
    for (const [item, n] of answeredPerItem) {
      const [sale, id] = item.split("/").map(Number) as [number, number]
      if (n > stock(sale, id)) violations.push(`item ${id} of sale ${sale} was answered sold ${n} times, its stock is ${stock(sale, id)}`)
    }
  }

  const tallies = check.tallies ?? (check.answers && { checkouts: tally(check.answers.checkouts), purchases: tally(check.answers.purchases) })
  if (check.attempts && tallies) {
    for (const [table, kind, accepted] of [["checkout_attempts", "checkouts", ["reserved", "repeated"]], ["purchase_attempts", "purchases", ["purchased"]]] as const) {
      const kept: Record<string, number> = {}
      for (const r of await query(`select outcome, count(*) as n from ${table} group by outcome`)) {
        const key = (accepted as readonly string[]).includes(r.outcome) ? "ok" : r.outcome
        kept[key] = (kept[key] ?? 0) + Number(r.n)
      }
      const answered = tallies[kind]
      const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, n) => a + n, 0)
      if (check.attempts === "exact") {
        if (JSON.stringify(Object.entries(kept).sort()) !== JSON.stringify(Object.entries(answered).sort())) violations.push(`${table} keeps ${JSON.stringify(kept)}, the answers were ${JSON.stringify(answered)}`)
      } else {
        for (const [outcome, n] of Object.entries(answered)) if ((kept[outcome] ?? 0) < n) violations.push(`${table} keeps ${kept[outcome] ?? 0} ${outcome}, ${n} were answered`)
        const most = total(answered) + check.attempts.unanswered[kind]
        if (total(kept) > most) violations.push(`${table} keeps ${total(kept)} rows, more than the ${most} requests sent`)
      }
    }
  }

  for (const [sale, sold] of check.liveSold ?? []) {
    const kept = purchases.filter((p) => Number(p.sale_id) === sale).length
    if (sold !== kept) violations.push(`sale ${sale}: the live state counts ${sold} sold, the store keeps ${kept} purchases`)
  }
  return violations
}
