/** Load and fault helpers shared by the fault suites: shoppers, servers as processes, cleanup. */
import { afterEach } from "bun:test"
import { until } from "./services"
import { inFlight } from "./harness"
import { request, startServer, type ServerProcess } from "./process"

/** Cleanups run after each test, in reverse, and servers started as processes that are killed then. */
export function fixtures() {
  const cleanups: (() => Promise<unknown>)[] = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
  })
  async function server(env: Record<string, string>): Promise<ServerProcess> {
    const s = await startServer(env)
    cleanups.push(() => s.stop("SIGKILL"))
    return s
  }
  return { cleanups, server }
}

export type Result = { status: number; body: any }

/** These tests run on the real clock; a one-year sale keeps a period boundary from splitting the stock mid-test. */
export const oneSale = { SALE_PERIOD_SECONDS: "31536000" }

/** Shoppers who check out random items and buy what they hold, until told to stop or the sale sells out. */
export function shoppers(base: () => string, items: number, log: { checkouts: Result[]; purchases: Result[]; failed: number }) {
  let running = true
  const one = (user: string) => async () => {
    while (running) {
      try {
        const held = await request(base(), "POST", `/checkout?user_id=${user}&id=${1 + Math.floor(Math.random() * items)}`)
        log.checkouts.push(held)
        if (held.body.error === "sold_out") return
        if (held.status === 200) log.purchases.push(await request(base(), "POST", `/purchase?code=${held.body.code}`))
      } catch {
        log.failed++ // connection refused or reset while the server is down: this attempt's outcome is unknown
        await Bun.sleep(5)
      }
    }
  }
  return { run: (n: number) => inFlight(n, Array.from({ length: n }, (_, i) => one(`s${i}`))), stop: () => (running = false) }
}

export const drainedHealth = (base: string) => until("the ledger to drain", async () => {
  const health = await request(base, "GET", "/health")
  return health.status === 200 && health.body.checks.ledger.backlog_entries === 0 && health.body.status === "ok"
}, 30_000)

