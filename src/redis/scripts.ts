/**
 * The Lua scripts (lua/), embedded in the binary and registered with ioredis defineCommand (EVALSHA, falling
 * back to EVAL), each behind a typed function: it builds the script's ARGV and decodes its reply, by position,
 * here and nowhere else (each script's header documents both).
 */
import type { RedisClient } from "./connect"
import prelude from "../../lua/prelude.lua" with { type: "text" }
import checkout from "../../lua/checkout.lua" with { type: "text" }
import purchase from "../../lua/purchase.lua" with { type: "text" }
import release from "../../lua/release.lua" with { type: "text" }
import status from "../../lua/status.lua" with { type: "text" }
import initSale from "../../lua/init_sale.lua" with { type: "text" }
import settings from "../../lua/settings.lua" with { type: "text" }
import shardHold from "../../lua/shard_hold.lua" with { type: "text" }
import shardSlot from "../../lua/shard_slot.lua" with { type: "text" }
import shardSettle from "../../lua/shard_settle.lua" with { type: "text" }
import shardUnslot from "../../lua/shard_unslot.lua" with { type: "text" }
import shardVerify from "../../lua/shard_verify.lua" with { type: "text" }
import itemsIfReady from "../../lua/items_if_ready.lua" with { type: "text" }
import clock from "../../lua/clock.lua" with { type: "text" }
import releaseHold from "../../lua/release_hold.lua" with { type: "text" }
import note from "../../lua/note.lua" with { type: "text" }
import { UnavailableError } from "../sale/engine"
import { checkoutOutcome, control, purchaseOutcome, type CheckoutOutcome, type PurchaseOutcome } from "../sale/outcomes"
import { layoutVersion, saleKeyCount } from "./keys"
import type { SaleItems } from "../sale/sales"

const bodies = { checkout, purchase, release, status, initSale, settings, shardHold, shardSlot, shardSettle, shardUnslot, shardVerify, itemsIfReady, clock, releaseHold, note }
type ScriptName = keyof typeof bodies
type Raw = (keys: string[], args: (string | number | Buffer)[]) => Promise<any>

/** A reply that decided nothing: the part is not initialised (rebuild it), or the sale is not open at `now`. */
export type Undecided = { kind: "notReady" } | { kind: "closed"; now: number }
const undecided = (reply: any[]): Undecided | undefined => {
  const head = Number(reply[0])
  if (head === control.notReady) return { kind: "notReady" }
  if (head === control.wrongSale) return { kind: "closed", now: Number(reply[1]) }
  return undefined
}

/** One checkout. `spec`: the item's definition as lua/prelude.lua reads it (specOf), from which the part makes the
 * item's record when it is first touched. */
export type CheckoutRequest = { itemId: number; spec: string; userId: string; code: string }
export type CheckoutDecided = { outcome: CheckoutOutcome; code: string; expiresAt: number; unit: number }
export type Batch<T> = { kind: "decided"; now: number; entryId: string; results: T[] }

export type PurchaseDecided = { outcome: PurchaseOutcome; itemId: number; userId: string; unit: number }

export type PartStatus = { now: number; sold: number; held: number; units: number; checkoutsOk: number; checkoutsRejected: number; purchasesOk: number; purchasesRejected: number; paused: boolean; closes: number; rev: number }

/** shard_hold's statuses that decide nothing yet (lua/shard_hold.lua). */
export const step = { tentative: 2, shardFull: -12, inFlight: -13, ask: -14, lost: -15, abandoned: -16 } as const
/** What a step-1 request says of the other shards, and whether to wait for the user's own tentative hold of the item. */
export type HoldRequest = CheckoutRequest & { others: "unknown" | "sold-out" | "selling"; wait: boolean }
/** One request's step 1: a decided outcome, or a step of the split checkout (`step`). */
export type HoldStep = { status: number; code: string; expiresAt: number; unit: number }
/** `asked`: the user's expired holds were asked about already, so what is still listed is live. */
export type SlotRequest = { userId: string; code: string; expiresAt: number; at: number; asked: boolean }
/** What became of a hold a user shard lists (lua/shard_verify.lua, lua/shard_unslot.lua). */
export type HoldFate = "bought" | "live" | "ended"

/**
 * An item's definition as a script request names it (lua/prelude.lua): '' for a sale whose items are alike (the
 * part's state has their definition), '-' for an item the sale does not have, else "ix|stock|per_user", where ix
 * is its place among its part's items (shard `position % shards` of a split sale keeps every `shards`-th item).
 */
export function specOf(items: SaleItems, itemId: number, shards: number): string {
  if (items.uniform) return ""
  const position = items.position(itemId)
  if (position < 0) return "-"
  let specs = specCache.get(items)
  if (!specs || specs.shards !== shards) specCache.set(items, (specs = { shards, byPosition: [] }))
  return (specs.byPosition[position] ??= `${Math.floor(position / shards)}|${items.at(position).stock}|${items.at(position).perUser}`)
}
const specCache = new WeakMap<SaleItems, { shards: number; byPosition: string[] }>()

/** A unit the store kept as sold or held, with its item's definition (as in CheckoutRequest). */
export type KeptUnit = { itemId: number; spec: string; unit: number; userId: string; code: string; at: number }

export type InitArgs = {
  mode: "empty" | "rebuild"
  settings: string
  /** Each item's stock, 32-bit big-endian at its ix: the avail key as an untouched part keeps it. */
  avail: Buffer
  /** The part's units in all. */
  units: number
  /** "n|stock|per_user" for a sale whose items are alike (ids 1..n), else "0|0|0". */
  uniform: string
  split: string
  counters: [number, number, number, number]
  sold: KeptUnit[]
  holds: KeptUnit[]
  /** A shard of a split sale: its users' values (lua/shard_slot.lua). */
  users?: Map<string, string>
}

export function registerScripts(redis: RedisClient) {
  const raw = {} as Record<ScriptName, Raw>
  for (const [name, body] of Object.entries(bodies) as [ScriptName, string][]) {
    // A declared key count lets ioredis route (and auto-pipeline) each call by its first key, the part's.
    redis.defineCommand(`fs_${name}`, { lua: `local layout = '${layoutVersion}'\n${prelude}\n${body}`, numberOfKeys: saleKeyCount })
    const command = (redis as unknown as Record<string, Function>)[`fs_${name}`]!.bind(redis)
    raw[name] = (keys, args) => command(...keys, ...args).catch(unavailable)
  }
  return {
    async checkout(keys: string[], now: string, saleId: number, requests: CheckoutRequest[]): Promise<Batch<CheckoutDecided> | Undecided> {
      // A sale whose items are alike names no spec: one argument less per request on the hot path.
      const alike = requests.every((r) => r.spec === "")
      const args: (string | number)[] = [now, saleId, alike ? "alike" : "named"]
      if (alike) for (const r of requests) args.push(r.itemId, r.userId, r.code)
      else for (const r of requests) args.push(r.itemId, r.spec, r.userId, r.code)
      const reply: any[] = await raw.checkout(keys, args)
      const not = undecided(reply)
      if (not) return not
      // A refusal is its status alone; a hold (new or repeated) is followed by its code, expiry and unit.
      let at = 3
      const results = requests.map((): CheckoutDecided => {
        const status = Number(reply[at++])
        if (status < 0) return { outcome: checkoutOutcome(status), code: "", expiresAt: 0, unit: 0 }
        return { outcome: checkoutOutcome(status), code: String(reply[at++]), expiresAt: Number(reply[at++]), unit: Number(reply[at++]) }
      })
      return { kind: "decided", now: Number(reply[1]), entryId: String(reply[2]), results }
    },
    async purchase(keys: string[], now: string, saleId: number, purchasableUntil: number, codes: string[]): Promise<Batch<PurchaseDecided> | Undecided | { kind: "unknown" }> {
      const reply: any[] = await raw.purchase(keys, [now, saleId, purchasableUntil, ...codes])
      if (Number(reply[0]) === control.notReady) return { kind: "notReady" }
      if (reply.length === 1) return { kind: "unknown" }
      const results = codes.map((_, i): PurchaseDecided => ({ outcome: purchaseOutcome(Number(reply[3 + 4 * i])), itemId: Number(reply[4 + 4 * i]), userId: String(reply[5 + 4 * i]), unit: Number(reply[6 + 4 * i]) }))
      return { kind: "decided", now: Number(reply[1]), entryId: String(reply[2]), results }
    },
    async status(keys: string[], now: string): Promise<PartStatus | { kind: "notReady" }> {
      const r: any[] = await raw.status(keys, [now])
      if (Number(r[0]) === control.notReady) return { kind: "notReady" }
      const n = r.map(Number)
      return { now: n[1]!, sold: n[2]!, held: n[3]!, units: n[4]!, checkoutsOk: n[5]!, checkoutsRejected: n[6]!, purchasesOk: n[7]!, purchasesRejected: n[8]!, paused: n[9] === 1, closes: n[10]!, rev: n[11]! }
    },
    /** Keeps refusals the server answered from what it was told (lua/note.lua): `lines` in the journal's format. */
    async note(keys: string[], now: string, saleId: number, lines: string, count: number, says: "sold_out" | "item_sold"): Promise<{ kind: "kept"; now: number; entryId: string } | Undecided | { kind: "stale" }> {
      const reply: any[] = await raw.note(keys, [now, saleId, lines, count, says])
      const not = undecided(reply)
      if (not) return not
      if (Number(reply[0]) !== 0) return { kind: "stale" }
      return { kind: "kept", now: Number(reply[1]), entryId: String(reply[2]) }
    },
    release: (keys: string[], now: string): Promise<number> => raw.release(keys, [now]).then(Number),
    /** An operator's release of a live hold (lua/release_hold.lua). */
    async releaseHold(keys: string[], now: string, saleId: number, code: string): Promise<{ kind: "released"; itemId: number; unit: number; userId: string; expiresAt: number } | { kind: "bought" | "none" | "notReady" }> {
      const r: any[] = await raw.releaseHold(keys, [now, saleId, code])
      const head = Number(r[0])
      if (head === control.notReady) return { kind: "notReady" }
      if (head === -7) return { kind: "bought" }
      if (head !== 0) return { kind: "none" }
      return { kind: "released", itemId: Number(r[1]), unit: Number(r[2]), userId: String(r[3]), expiresAt: Number(r[4]) }
    },
    initSale(keys: string[], now: string, saleId: number, init: InitArgs): Promise<1 | 0 | -1> {
      const args: (string | number | Buffer)[] = [now, saleId, init.mode, init.settings, init.avail, `${init.units}|${init.uniform}`, init.split, ...init.counters]
      for (const kept of [init.sold, init.holds]) {
        args.push(kept.length)
        for (const k of kept) args.push(k.itemId, k.spec, k.unit, k.userId, k.code, k.at)
      }
      if (init.users) {
        args.push(init.users.size)
        for (const [user, value] of init.users) args.push(user, value)
      }
      return raw.initSale(keys, args).then(Number) as Promise<1 | 0 | -1>
    },
    async settings(keys: string[], now: string, saleId: number, mode: "restrict" | "apply", settings: string, items: string, units: number): Promise<{ kind: "done" | "older"; now: number } | { kind: "inUse"; itemId: number; unit: number } | { kind: "notReady" }> {
      const r: any[] = await raw.settings(keys, [now, saleId, mode, settings, items, units])
      const head = Number(r[0])
      if (head === control.notReady) return { kind: "notReady" }
      if (head === -20) return { kind: "inUse", itemId: Number(r[1]), unit: Number(r[2]) }
      return { kind: head === 1 ? "older" : "done", now: Number(r[1]) }
    },
    async shardHold(keys: string[], now: string, saleId: number, requests: HoldRequest[]): Promise<Batch<HoldStep> | Undecided> {
      const args: (string | number)[] = [now, saleId]
      for (const r of requests) args.push(r.itemId, r.spec, r.userId, r.code, r.others, r.wait ? "wait" : "no-wait")
      const reply: any[] = await raw.shardHold(keys, args)
      const not = undecided(reply)
      if (not) return not
      const results = requests.map((_, i): HoldStep => ({ status: Number(reply[3 + 4 * i]), code: String(reply[4 + 4 * i]), expiresAt: Number(reply[5 + 4 * i]), unit: Number(reply[6 + 4 * i]) }))
      return { kind: "decided", now: Number(reply[1]), entryId: String(reply[2]), results }
    },
    async shardSlot(keys: string[], saleId: number, slots: SlotRequest[]): Promise<{ status: number; asked: string[] }[] | { kind: "notReady" }> {
      const args: (string | number)[] = ["", saleId]
      for (const s of slots) args.push(s.userId, s.code, s.expiresAt, s.at, s.asked ? "asked" : "")
      const reply: any[] = await raw.shardSlot(keys, args)
      if (Number(reply[0]) === control.notReady) return { kind: "notReady" }
      return slots.map((_, i) => ({ status: Number(reply[1 + 2 * i]), asked: String(reply[2 + 2 * i]).split(",").filter(Boolean) }))
    },
    async shardSettle(keys: string[], at: number, saleId: number, requests: { itemId: number; userId: string; code: string; verdict: number }[]): Promise<{ entryId: string; statuses: number[] } | { kind: "notReady" }> {
      const args: (string | number)[] = [at, saleId]
      for (const r of requests) args.push(r.itemId, r.userId, r.code, r.verdict)
      const reply: any[] = await raw.shardSettle(keys, args)
      if (Number(reply[0]) === control.notReady) return { kind: "notReady" }
      return { entryId: String(reply[1] ?? ""), statuses: requests.map((_, i) => Number(reply[2 + i])) }
    },
    shardUnslot: (keys: string[], saleId: number, holds: [user: string, code: string, fate: Exclude<HoldFate, "live">][]): Promise<number> => raw.shardUnslot(keys, ["", saleId, ...holds.flat()]).then(Number),
    async shardVerify(keys: string[], now: string, saleId: number, codes: string[]): Promise<HoldFate[] | { kind: "notReady" }> {
      const reply: any[] = await raw.shardVerify(keys, [now, saleId, ...codes])
      if (Number(reply[0]) === control.notReady) return { kind: "notReady" }
      return codes.map((_, i) => String(reply[1 + i]) as HoldFate)
    },
    /** A shard's code records (code -> record), or null if it is not initialised. */
    async itemsIfReady(keys: string[]): Promise<Map<string, string> | null> {
      const reply: string[] | null = await raw.itemsIfReady(keys, [])
      if (!reply) return null
      const records = new Map<string, string>()
      for (let i = 0; i + 1 < reply.length; i += 2) records.set(reply[i]!, reply[i + 1]!)
      return records
    },
    /** The clock of the node that owns these keys, in Unix ms. */
    async clock(keys: string[]): Promise<number> {
      const [seconds, micros] = (await raw.clock(keys, [])) as [string, string]
      return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
    },
  }
}

export type Scripts = ReturnType<typeof registerScripts>

/** Rethrows a Redis error as "cannot decide now" (503) when it is one, as itself (a bug) otherwise. */
export function unavailable(error: unknown): never {
  const message = (error as Error)?.message ?? String(error)
  if (/ERR|NOSCRIPT|WRONGTYPE/.test(message) && !/LOADING|BUSY|READONLY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN/.test(message)) throw error
  throw new UnavailableError(`redis: ${message}`)
}

/** A code record (lua/prelude.lua): "h|item|unit|expires_ms|user", "t|..." or "p|item|unit|purchased_ms|user". */
export function codeRecord(record: string): { kind: "h" | "t" | "p"; itemId: number; unit: number; at: number; userId: string } | undefined {
  const m = /^([htp])\|(\d+)\|(\d+)\|(\d+)\|(.+)$/.exec(record)
  return m ? { kind: m[1] as "h" | "t" | "p", itemId: Number(m[2]), unit: Number(m[3]), at: Number(m[4]), userId: m[5]! } : undefined
}
