/**
 * The live side of the operator API on Redis (sale/operator.ts's LiveSales), the reconciliation that keeps
 * every part of a sale in line with PostgreSQL, and the storefront's snapshot (GET /items).
 *
 * A sale's settings live in each part's state hash, so the scripts of every instance read them at every
 * decision. An operator's change is applied to every part under the sale's settings lock: what tightens first
 * (settings.lua 'restrict'), then, once PostgreSQL has it, the whole definition with its revision ('apply').
 * Once a second each instance compares the parts of the sales that matter with the book and applies what is
 * missing: a change kept by an instance that died before applying it, or a 'restrict' never completed.
 */
import type { RedisClient } from "./connect"
import { Refusal, type LiveSales, type SaleCounts } from "../sale/stores"
import type { SaleChange } from "../sale/definitions"
import { closesAt, type Sale } from "../sale/sales"
import { shelfOf } from "../sale/shelf"
import type { Shelf } from "../sale/engine"
import type { Book } from "./book"
import type { Lifecycle } from "./lifecycle"
import { availKey, codeShard, itemShard, userShard, layoutVersion, logKey, onceKey, partsOf, saleKeys, settingsLockKey, statsKey } from "./keys"
import { codeRecord, type Scripts } from "./scripts"
import { UnavailableError } from "../sale/engine"
import type { LiveView } from "../sale/audit"

const lockMs = 10_000

export function createLive({ redis, scripts, book, sale: lifecycle, shards, log }: { redis: RedisClient; scripts: Scripts; book: Book; sale: Lifecycle; shards: number; log: (message: string) => void }) {
  const parts = (saleId: number) => partsOf(saleId, shards)
  const token = crypto.randomUUID()

  const settingsText = (s: Pick<Sale, "startsAt" | "endsAt" | "endedAt" | "paused" | "userLimit" | "holdMs" | "rev">, closes: number | "now" = closesAt(s)) => `${s.startsAt}|${closes}|${s.paused ? 1 : 0}|${s.userLimit}|${s.holdMs}|${s.rev}`

  /**
   * What settings.lua needs of part k's items: "id:stock:per_user:ix" of the items named (all of the part's when
   * `ids` is omitted), with `stocks` in place of the sale's where given, and the part's units in all.
   */
  function itemsOf(sale: Sale, k: number, ids?: number[], stocks = new Map<number, number>()): [items: string, units: number] {
    const { items } = sale
    const stockAt = (p: number) => (stocks.size > 0 ? stocks.get(items.at(p).id) : undefined) ?? items.uniform?.stock ?? items.at(p).stock
    const item = (p: number) => `${items.at(p).id}:${stockAt(p)}:${items.at(p).perUser}:${Math.floor(p / shards)}`
    const named: string[] = []
    let units = 0
    for (let p = k; p < items.size; p += shards) {
      units += stockAt(p)
      if (!ids) named.push(item(p))
    }
    for (const p of ids?.map((id) => items.position(id)) ?? []) if (p >= 0 && itemShard(p, shards) === k) named.push(item(p))
    return [named.join(","), units]
  }

  async function lock(saleId: number): Promise<boolean> {
    return (await redis.set(settingsLockKey(parts(saleId)[0]!), token, "PX", lockMs, "NX")) === "OK"
  }
  async function unlock(saleId: number): Promise<void> {
    const key = settingsLockKey(parts(saleId)[0]!)
    if ((await redis.get(key)) === token) await redis.del(key)
  }

  /**
   * Writes a sale's definition to every part. `changed`: the items whose stock may differ from the parts'; an
   * item's record is made (or set) for each, so all of them when the parts' stocks are not known (reconcile).
   */
  async function apply(sale: Sale, changed?: number[]): Promise<void> {
    await Promise.all(parts(sale.id).map((part, k) => scripts.settings(saleKeys(part), lifecycle.nowArg(), sale.id, "apply", settingsText(sale), ...itemsOf(sale, k, changed))))
  }

  async function partStatuses(sale: Sale) {
    return Promise.all(parts(sale.id).map((part) => scripts.status(saleKeys(part), lifecycle.nowArg())))
  }

  const live: LiveSales = {
    now: async () => lifecycle.estimatedNow(),
    async exclusive(sale, work) {
      const deadline = Date.now() + 5000
      while (!(await lock(sale.id))) {
        if (Date.now() > deadline) throw new Refusal("unavailable", `Another operator's change to sale ${sale.id} is under way; try again.`)
        await Bun.sleep(20)
      }
      try {
        return await work()
      } finally {
        await unlock(sale.id).catch(() => {})
      }
    },
    async restrict(sale: Sale, change: SaleChange) {
      const tight = { ...sale, paused: change.paused === true || sale.paused, userLimit: Math.min(change.userLimit ?? sale.userLimit, sale.userLimit) }
      const closes = change.endedAt !== undefined ? "now" : closesAt(sale)
      const lowered = new Map<number, number>()
      for (const s of change.stocks ?? []) {
        const position = sale.items.position(s.id)
        if (position >= 0 && s.stock < sale.items.at(position).stock) lowered.set(s.id, s.stock)
      }
      let at = lifecycle.estimatedNow()
      const replies = await Promise.all(parts(sale.id).map((part, k) => scripts.settings(saleKeys(part), lifecycle.nowArg(), sale.id, "restrict", settingsText(tight, closes), ...itemsOf(sale, k, [...lowered.keys()], lowered))))
      for (const reply of replies) {
        if (reply.kind === "inUse") {
          // Parts already restricted go back to what is kept.
          await apply(sale, [...lowered.keys()]).catch(() => {})
          return new Refusal("stock_in_use", `Item ${reply.itemId}'s stock cannot go below ${reply.unit}: unit ${reply.unit} is sold or held.`, { item: reply.itemId, lowest_stock: reply.unit })
        }
        if (reply.kind === "done") at = Math.max(at, reply.now)
      }
      return { now: at }
    },
    apply,
    async counts(sale) {
      const statuses = await partStatuses(sale)
      if (statuses.some((s) => "kind" in s)) return undefined
      const all = statuses as Exclude<(typeof statuses)[number], { kind: "notReady" }>[]
      const sum = (f: (s: (typeof all)[number]) => number) => all.reduce((a, s) => a + f(s), 0)
      return {
        sold: sum((s) => s.sold),
        reserved: sum((s) => s.held),
        checkouts: { accepted: sum((s) => s.checkoutsOk), rejected: sum((s) => s.checkoutsRejected) },
        purchases: { accepted: sum((s) => s.purchasesOk), rejected: sum((s) => s.purchasesRejected) },
      } satisfies SaleCounts
    },
    async available(sale) {
      const read = await availableOf(sale)
      return read && Array.from({ length: sale.items.size }, (_, p) => read(p))
    },
    reload: () => book.load(),
    schedule: () => book.schedule(),
    async release(sale, code) {
      const shard = shards === 1 ? 0 : codeShard(code, shards)
      if (shard === undefined) return { kind: "none" }
      const part = parts(sale.id)[shard]!
      for (let attempt = 0; attempt < 3; attempt++) {
        const reply = await scripts.releaseHold(saleKeys(part), lifecycle.nowArg(), sale.id, code)
        if (reply.kind === "notReady") await lifecycle.rebuild(sale)
        else if (reply.kind === "released") {
          // A split sale's user shard lists the hold: it is told at once, so the user's slot is free now, not at its expiry.
          if (shards > 1) await scripts.shardUnslot(saleKeys(parts(sale.id)[userShard(reply.userId, shards)]!), sale.id, [[reply.userId, code, "ended"]])
          return { kind: "released", hold: { itemId: reply.itemId, unit: reply.unit, userId: reply.userId, code, at: reply.expiresAt } }
        }
        else return { kind: reply.kind }
      }
      throw new UnavailableError(`sale ${sale.id} is being rebuilt; try again`)
    },
    view: (sale) => viewOf(sale),
    async settled(sale) {
      const lengths = await Promise.all(parts(sale.id).map((part) => redis.xlen(logKey(part))))
      return lengths.every((n) => n === 0)
    },
    async once(key, work) {
      const lock = onceKey(key)
      if ((await redis.set(lock, token, "PX", 60_000, "NX")) !== "OK") return undefined
      try {
        return await work()
      } finally {
        if ((await redis.get(lock).catch(() => null)) === token) await redis.del(lock).catch(() => {})
      }
    },
  }

  /** Every field of a hash, read in pages so that a large one never blocks Redis for long. */
  async function scanHash(key: string, each: (field: string, value: string) => void): Promise<void> {
    let cursor = "0"
    do {
      const [next, entries] = await redis.hscan(key, cursor, "COUNT", 1000)
      for (let i = 0; i + 1 < entries.length; i += 2) each(entries[i]!, entries[i + 1]!)
      cursor = next
    } while (cursor !== "0")
  }

  /**
   * A sale's live state for the audit (sale/audit.ts), read from every part once each has released its expired
   * holds; undefined when a part is not initialised (forgotten past retention, or lost and not rebuilt).
   */
  async function viewOf(sale: Sale): Promise<LiveView | undefined> {
    const now = lifecycle.estimatedNow()
    const view: LiveView = { sold: [], holds: [], items: new Map(), users: new Map(), counters: { checkouts: { accepted: 0, rejected: 0 }, purchases: { accepted: 0, rejected: 0 } }, rebuiltAt: null }
    const live = new Set<string>()
    const listed: { userId: string; n: number; codes: string[] }[] = []
    for (const part of parts(sale.id)) {
      await scripts.release(saleKeys(part), lifecycle.nowArg())
      const [v, cOk, cRej, pOk, pRej, rebuilt] = await redis.hmget(statsKey(part), "v", "c_ok", "c_rej", "p_ok", "p_rej", "rebuilt")
      if (v !== layoutVersion) return undefined
      view.counters.checkouts.accepted += Number(cOk)
      view.counters.checkouts.rejected += Number(cRej)
      view.counters.purchases.accepted += Number(pOk)
      view.counters.purchases.rejected += Number(pRej)
      if (Number(rebuilt) > 0) view.rebuiltAt = Math.max(view.rebuiltAt ?? 0, Number(rebuilt))
      const [items, codes, users] = saleKeys(part)
      await scanHash(codes!, (code, value) => {
        const r = codeRecord(value)
        if (!r) return
        const unit = { itemId: r.itemId, unit: r.unit, userId: r.userId, code, at: r.at }
        if (r.kind === "p") view.sold.push(unit)
        else if (r.kind === "h" && r.at > now) view.holds.push(unit)
        if (r.kind === "p" || (r.kind === "h" && r.at > now)) live.add(code)
      })
      await scanHash(items!, (field, value) => {
        if (field.includes("|")) return
        const [, , sold, held] = value.split("|")
        view.items.set(Number(field), { sold: Number(sold), held: Number(held) })
      })
      await scanHash(users!, (user, value) => {
        if (shards === 1) view.users.set(user, Number(value))
        else listed.push({ userId: user, n: Number(value.split("|")[0]), codes: [...value.matchAll(/\|([^:|]+):\d+/g)].map((m) => m[1]!) })
      })
    }
    // A user shard counts a listed hold until it asks what became of it: one that ended unbought no longer counts.
    for (const { userId, n, codes } of listed) view.users.set(userId, n - codes.filter((c) => !live.has(c)).length)
    for (const [user, n] of view.users) if (n <= 0) view.users.delete(user)
    return view
  }

  /** Units available by position, from each part's avail string (lua/prelude.lua), or undefined while a part is not initialised. */
  async function availableOf(sale: Sale): Promise<((position: number) => number) | undefined> {
    const buffers = await Promise.all(parts(sale.id).map((part) => redis.getBuffer(availKey(part))))
    if (buffers.some((b) => b === null)) return undefined
    const views = buffers.map((b) => new DataView(b!.buffer, b!.byteOffset, b!.byteLength))
    return (position) => {
      const view = views[position % shards]!
      const at = Math.floor(position / shards) * 4
      return at + 4 <= view.byteLength ? view.getUint32(at) : 0
    }
  }

  /** Puts every part of the sales that matter in line with the book: a change not applied, or a 'restrict' left dirty. */
  async function reconcile(): Promise<void> {
    const at = lifecycle.estimatedNow()
    const schedule = book.schedule()
    const sales = new Map<number, Sale>()
    for (const s of [...book.recent(at), schedule.current(at), schedule.next(at)]) if (s) sales.set(s.id, s)
    for (const sale of sales.values()) {
      const states = await Promise.all(parts(sale.id).map((part) => redis.hmget(statsKey(part), "v", "rev", "dirty")))
      const behind = states.some(([v, rev, dirty]) => v === layoutVersion && (Number(rev) < sale.rev || dirty === "1"))
      if (!behind || !(await lock(sale.id))) continue
      try {
        await apply(sale)
        log(`sale ${sale.id}: settings brought in line with PostgreSQL (revision ${sale.rev})`)
      } finally {
        await unlock(sale.id).catch(() => {})
      }
    }
  }

  // The storefront: refreshed in the background while anyone reads it, at most a second old.
  let current: { shelf: Shelf; at: number; detector: string } | undefined
  let wantedAt = 0
  let refreshing: Promise<void> | undefined
  async function refreshShelf(): Promise<void> {
    const at = lifecycle.estimatedNow()
    const schedule = book.schedule()
    const sale = schedule.current(at) ?? schedule.next(at)
    if (!sale) {
      current = { shelf: shelfOf(undefined, () => undefined), at: Date.now(), detector: "none" }
      return
    }
    // Only when something changed: the counters a hold, an expiry, a sale or a restock moves.
    const stats = await Promise.all(parts(sale.id).map((part) => redis.hmget(statsKey(part), "c_ok", "held", "sold", "units", "rev")))
    const detector = `${sale.id}/${sale.rev}/${JSON.stringify(stats)}`
    if (current && current.detector === detector) {
      current.at = Date.now()
      return
    }
    const read = await availableOf(sale)
    current = { shelf: shelfOf(sale, (p) => read?.(p)), at: Date.now(), detector }
  }

  return {
    live,
    reconcile,
    /** The storefront's snapshot; reading it keeps it refreshed for the next minute. The first read waits for the first snapshot. */
    shelf(): Shelf | Promise<Shelf> {
      wantedAt = Date.now()
      if (!current || Date.now() - current.at >= 1000) refreshing ??= refreshShelf().finally(() => (refreshing = undefined))
      return current ? current.shelf : refreshing!.then(() => current!.shelf)
    },
    /** Called by the maintenance timer: keeps the snapshot fresh while someone read it in the last minute. */
    async tickShelf(): Promise<void> {
      if (Date.now() - wantedAt < 60_000 && (!current || Date.now() - current.at >= 500)) await (refreshing ??= refreshShelf().finally(() => (refreshing = undefined)))
    },
  }
}
