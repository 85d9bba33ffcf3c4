/**
 * Admission control in front of the engines: a token bucket per client, in this process's memory only (no
 * Redis call, so each instance limits what reaches it). A refused request is answered 429 rate_limited with
 * Retry-After before any engine sees it: it is not a decision and nothing of it is kept.
 */
import type { Config } from "../config"
import type { Metrics } from "../metrics"
import { fail } from "./respond"

/** What tells a request's peer address: Bun's server (null when a test calls app.handle()). */
export type Peer = { requestIP(request: Request): { address: string } | null } | null | undefined

export type Limits = Pick<Config, "rateLimitPerUser" | "rateLimitPerIp" | "rateLimitBurstSeconds" | "trustProxyHops">

/** Clients one table tracks at most; past that, idle clients go first, then the oldest (who get a full bucket back). */
export const defaultCapacity = 100_000

/**
 * Token buckets as GCRA: per key one number, the moment its bucket will be full again ("theoretical arrival
 * time"). A key whose moment has passed has a full bucket, exactly as if absent, so it can be dropped freely.
 * At `rate` per second each key may burst to `burst` requests. Memory is at most `capacity` entries; under a
 * flood of distinct keys most entries are idle within 1/rate seconds, and the sweep removes them.
 */
export function tokenBuckets(rate: number, burst: number, capacity = defaultCapacity) {
  const interval = 1000 / rate
  const tolerance = Math.max(1, burst) * interval
  const full = new Map<string, number>()
  // Sweeps start small and follow the working set, so that the table stays small (and fast) under a steady flow.
  const smallest = Math.min(capacity, 8192)
  let sweepAt = smallest
  function sweep(now: number): void {
    for (const [key, at] of full) if (at <= now) full.delete(key)
    if (full.size > sweepAt / 2) sweepAt = Math.min(capacity, sweepAt * 2)
    else if (full.size < sweepAt / 8) sweepAt = Math.max(smallest, sweepAt / 2)
    // Still full of active keys: forget the oldest tenth. They get a full bucket back, which is lenient, never unfair.
    let excess = full.size - Math.floor(capacity * 0.9)
    for (const key of full.keys()) {
      if (excess-- <= 0) break
      full.delete(key)
    }
  }
  return {
    /** Takes a token for `key` at `now` (ms): 0 if admitted, else the milliseconds until it would be. */
    take(key: string, now: number): number {
      const at = full.get(key)
      const next = (at === undefined || at < now ? now : at) + interval
      const wait = next - now - tolerance
      if (wait > 0) return wait
      if (at === undefined && full.size >= sweepAt) sweep(now)
      full.set(key, next)
      return 0
    },
    get size() {
      return full.size
    },
  }
}

/** Requests the app made from one that arrived (a path it normalised), with the address that one came from. */
const forwardedFrom = new WeakMap<Request, string>()

/** Marks `copy` as coming from the same client as `original`, so that its limits are that client's. */
export function samePeer(original: Request, copy: Request, server: Peer): void {
  const address = forwardedFrom.get(original) ?? server?.requestIP(original)?.address
  if (address !== undefined) forwardedFrom.set(copy, address)
}

/** The client's address: the socket's, or with `hops` trusted proxies in front, the one the outermost of them saw. */
export function clientAddress(request: Request, server: Peer, hops: number): string | undefined {
  if (hops > 0) {
    const forwarded = request.headers.get("x-forwarded-for")
    if (forwarded) {
      const hopsSeen = forwarded.split(",")
      const address = hopsSeen[Math.max(0, hopsSeen.length - hops)]!.trim()
      if (address) return address
    }
  }
  return forwardedFrom.get(request) ?? server?.requestIP(request)?.address
}

export type Admission = ReturnType<typeof admission>

/** Per user_id on checkout, per code on purchase (a code is one user's hold), and optionally per client IP on both. */
export function admission(limits: Partial<Limits>, metrics: Pick<Metrics, "rateLimited">, now = () => performance.now(), capacity = defaultCapacity) {
  const { rateLimitPerUser = 0, rateLimitPerIp = 0, rateLimitBurstSeconds = 2, trustProxyHops = 0 } = limits
  const bucket = (rate: number) => (rate > 0 ? tokenBuckets(rate, Math.round(rate * rateLimitBurstSeconds), capacity) : undefined)
  const users = bucket(rateLimitPerUser)
  const codes = bucket(rateLimitPerUser)
  const ips = bucket(rateLimitPerIp)

  function refuse(by: "user" | "ip", waitMs: number): Response {
    metrics.rateLimited.inc(by)
    const seconds = Math.max(1, Math.ceil(waitMs / 1000))
    return fail("rate_limited", `Too many requests from this ${by === "user" ? "user" : "address"}; try again in ${seconds} s.`, { "retry-after": String(seconds) })
  }

  function admit(table: ReturnType<typeof tokenBuckets> | undefined, key: string, request: Request, server: Peer): Response | undefined {
    const at = now()
    if (ips) {
      const address = clientAddress(request, server, trustProxyHops)
      const wait = address === undefined ? 0 : ips.take(address, at)
      if (wait > 0) return refuse("ip", wait)
    }
    const wait = table ? table.take(key, at) : 0
    if (wait > 0) return refuse("user", wait)
    return undefined
  }

  return {
    /** undefined if admitted; else the 429 to answer with. */
    checkout: (userId: string, request: Request, server?: Peer) => admit(users, userId, request, server),
    purchase: (code: string, request: Request, server?: Peer) => admit(codes, code, request, server),
    entries: () => ({ user: (users?.size ?? 0) + (codes?.size ?? 0), ip: ips?.size ?? 0 }),
  }
}
