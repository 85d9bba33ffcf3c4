/** What the HTTP layer needs from a sale engine. Expected outcomes are values; only "cannot decide now" throws (UnavailableError). */
import type { Item } from "./catalog"
import type { CheckoutOutcome, PurchaseOutcome } from "./outcomes"
import type { Operator } from "./operator"
import type { Sale } from "./sales"

/** The sale a no_active_sale answer names: the next one to open, if any is planned. */
export type NextSale = { id: number; name: string; startsAt: number }

export type CheckoutResult =
  | { ok: true; repeated: boolean; code: string; saleId: number; item: Item; unit: number; expiresAt: number }
  | { ok: false; error: Exclude<CheckoutOutcome, "reserved" | "repeated"> }
  /** No sale is open: answered and counted, not kept (an attempt on no sale). */
  | { ok: false; error: "no_active_sale"; next: NextSale | undefined; now: number }

export type PurchaseResult =
  | { ok: true; saleId: number; userId: string; item: Item; unit: number; purchasedAt: number }
  | { ok: false; error: Exclude<PurchaseOutcome, "purchased"> | "item_sold" }

/** /status's sale_status: the open sale's state, or, when none is open, whether one is planned. */
export type SaleState = "active" | "paused" | "sold_out" | "scheduled" | "none"

export type SaleStatus = {
  /** The open sale, or when none is, the next planned one (its counters zero), or none at all. */
  sale: Sale | undefined
  state: SaleState
  now: number
  /** Units. */
  itemsTotal: number
  itemsSold: number
  itemsReserved: number
  checkouts: { accepted: number; rejected: number }
  purchases: { accepted: number; rejected: number }
}

/** One item as the storefront shows it: its units in all and those neither sold nor held. */
export type ShelfItem = Item & { stock: number; available: number }

/**
 * What the storefront reads (GET /items): the open sale's items, or the next one's before it opens, with what
 * is available of each, taken at most a second ago and held in memory. `version` changes whenever anything in it
 * does; equal snapshots (on any instance) have equal versions.
 */
export type Shelf = { saleId: number | null; version: string; size: number; at(position: number): ShelfItem; position(id: number): number }

export type Health = {
  /** ok: can sell and the durable store keeps up; degraded: can sell, the durable store lags or is down; down: cannot sell. */
  status: "ok" | "degraded" | "down"
  checks: Record<string, unknown>
}

export type Engine = {
  name: string
  checkout(userId: string, itemId: number): Promise<CheckoutResult>
  purchase(code: string): Promise<PurchaseResult>
  status(): Promise<SaleStatus>
  health(): Promise<Health>
  /** The storefront's snapshot, from memory (refreshed in the background, at most a second old; the first one is awaited). */
  shelf(): Shelf | Promise<Shelf>
  /** The operator API's backend. */
  operator: Operator
}

/** Thrown when the engine cannot decide (Redis unreachable, state being rebuilt). Answered 503 with Retry-After. */
export class UnavailableError extends Error {
  constructor(
    message: string,
    readonly retryAfterSeconds = 1,
  ) {
    super(message)
  }
}

/** Why a backend (Redis, PostgreSQL) cannot be used at start: `wrong` if waiting cannot fix it (its URL must change), `wait` if it may come up. */
export type Verdict = { kind: "wrong" | "wait"; reason: string }

/** What an engine that is not ready yet waits for, as /health shows it (addresses in their display form). */
export type Waiting = { waiting_for: string; address?: string; error?: string }

/** The engine while the server starts: it cannot sell yet, and its health says what it waits for. */
export function startingEngine(name: string, initial: Waiting): Engine & { waitingFor(waiting: Waiting): void } {
  let waiting: Waiting & { since: string } = { ...initial, since: new Date().toISOString() }
  const notYet = () => Promise.reject(new UnavailableError(`the server is starting: waiting for ${waiting.waiting_for}`, 2))
  const emptyShelf: Shelf = { saleId: null, version: "starting", size: 0, at: () => undefined as never, position: () => -1 }
  return {
    name,
    checkout: notYet,
    purchase: notYet,
    status: notYet,
    shelf: () => emptyShelf,
    operator: new Proxy({} as Operator, { get: () => notYet }),
    health: async () => ({ status: "down", checks: { engine: name, starting: waiting } }),
    waitingFor(next) {
      if (next.waiting_for !== waiting.waiting_for || next.error !== waiting.error) waiting = { ...next, since: new Date().toISOString() }
    },
  }
}

/**
 * An engine whose every call goes to the engine of the moment: the starting one, then the real one once it is
 * ready, so that the server can listen (and say in /health what it waits for) before it can sell.
 */
export function swappable(initial: ReturnType<typeof startingEngine>): { engine: Engine; swap(next: Engine): void; waitingFor(waiting: Waiting): void } {
  let target: Engine = initial
  const engine = { name: initial.name } as Engine
  for (const key of Object.keys(initial) as (keyof Engine)[]) {
    if (typeof initial[key] === "function") (engine as Record<string, unknown>)[key] = (...args: unknown[]) => (target[key] as (...a: unknown[]) => unknown)(...args)
  }
  // The operator API goes to the engine of the moment too (an object of functions, not a function).
  Object.defineProperty(engine, "operator", { get: () => target.operator })
  return {
    engine,
    swap: (next) => void (target = next),
    waitingFor: (waiting) => initial.waitingFor(waiting),
  }
}
