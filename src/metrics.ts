/**
 * This process's Prometheus series, rendered as text exposition 0.0.4. The hot path only bumps numbers in
 * preallocated arrays (no label objects, no allocation); a scrape formats them. No I/O and no timers at import:
 * startSampling() starts the event-loop lag sampler, and the scrape-time gauges (sale, backlog, health) are
 * passed to render() by the /metrics route.
 *
 * Each process serves its own series; Prometheus tells instances apart by the `instance` label it adds per
 * scrape target, so no label here names the process. An instance of several workers (WORKERS) serves every
 * worker's series, each labelled with its worker (labelWorkers).
 */
import { readdirSync } from "node:fs"
import { codeToStatus } from "./errors"
import { endpoints, type Endpoint } from "./http/routes"

export type { Endpoint }

export const contentType = "text/plain; version=0.0.4; charset=utf-8"

const number = (n: number) => (Number.isFinite(n) ? String(n) : Number.isNaN(n) ? "NaN" : n > 0 ? "+Inf" : "-Inf")
const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')
/** Label sets, one per value: `name="value"`. */
export const labelSets = (name: string, values: readonly string[]) => values.map((v) => `${name}="${escapeLabel(v)}"`)
const braces = (labels: string) => (labels ? `{${labels}}` : "")

function head(out: string[], name: string, type: string, help: string) {
  out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
}

/** A counter over a fixed list of label sets, each addressed by its index. */
export class Counter {
  readonly values: Float64Array
  constructor(
    readonly name: string,
    readonly help: string,
    readonly series: string[] = [""],
  ) {
    this.values = new Float64Array(series.length)
  }
  inc(index = 0, by = 1): void {
    this.values[index]! += by
  }
  render(out: string[], include: (index: number) => boolean = () => true): void {
    head(out, this.name, "counter", this.help)
    this.series.forEach((labels, i) => {
      if (include(i)) out.push(`${this.name}${braces(labels)} ${number(this.values[i]!)}`)
    })
  }
}

/** A histogram with fixed upper bounds over a fixed list of label sets; counts are kept per bucket and summed when rendered. */
export class Histogram {
  readonly counts: Float64Array
  readonly sums: Float64Array
  constructor(
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[],
    readonly series: string[] = [""],
  ) {
    this.counts = new Float64Array(series.length * (bounds.length + 1))
    this.sums = new Float64Array(series.length)
  }
  observe(value: number, index = 0): void {
    const bounds = this.bounds
    let b = 0
    while (b < bounds.length && value > bounds[b]!) b++
    this.counts[index * (bounds.length + 1) + b]!++
    this.sums[index]! += value
  }
  count(index = 0): number {
    let total = 0
    for (let b = 0; b <= this.bounds.length; b++) total += this.counts[index * (this.bounds.length + 1) + b]!
    return total
  }
  render(out: string[], include: (index: number) => boolean = () => true): void {
    head(out, this.name, "histogram", this.help)
    const width = this.bounds.length + 1
    this.series.forEach((labels, i) => {
      if (!include(i)) return
      const sep = labels ? `${labels},` : ""
      let cumulative = 0
      for (let b = 0; b < width; b++) {
        cumulative += this.counts[i * width + b]!
        out.push(`${this.name}_bucket{${sep}le="${b < this.bounds.length ? number(this.bounds[b]!) : "+Inf"}"} ${cumulative}`)
      }
      out.push(`${this.name}_sum${braces(labels)} ${number(this.sums[i]!)}`, `${this.name}_count${braces(labels)} ${cumulative}`)
    })
  }
}

/** A gauge read at scrape time: one value per label set. */
export function gauge(out: string[], name: string, help: string, values: [labels: string, value: number][]): void {
  head(out, name, "gauge", help)
  for (const [labels, value] of values) out.push(`${name}${braces(labels)} ${number(value)}`)
}

/** Every answer's outcome: a decision's, an error code, `ok` for other 200s, or /health's status. */
export const outcomeNames = ["ok", "not_modified", "reserved", "repeated", "purchased", "degraded", "down", ...Object.keys(codeToStatus)] as const
export type RequestOutcome = "ok" | "not_modified" | "reserved" | "repeated" | "purchased" | "degraded" | "down" | keyof typeof codeToStatus

/** The outcomes each endpoint can answer with, rendered even while zero so that rate() has a start. */
const expected: Record<Endpoint, readonly string[]> = {
  checkout: ["reserved", "repeated", "unknown_item", "sold_out", "sale_paused", "item_sold", "item_reserved", "user_limit", "no_active_sale", "rate_limited", "invalid_request", "unavailable"],
  purchase: ["purchased", "code_not_found", "code_used", "rate_limited", "invalid_request", "unavailable"],
  status: ["ok", "unavailable"],
  health: ["ok", "degraded", "down"],
  metrics: ["ok"],
  events: ["ok"],
  page: ["ok"],
  docs: ["ok"],
  items: ["ok", "not_modified", "unknown_item", "invalid_request"],
  admin: ["ok", "unauthorized", "rate_limited", "invalid_request", "not_found"],
  other: ["not_found", "method_not_allowed"],
}

const endpointIndex = Object.fromEntries(endpoints.map((e, i) => [e, i])) as Record<Endpoint, number>
const outcomeIndex = new Map<string, number>(outcomeNames.map((o, i) => [o, i]))
const O = outcomeNames.length

/** Every action admin_actions keeps (sale/operator.ts). */
export const adminActionNames = ["create_sale", "change_sale", "delete_sale", "pause_sale", "resume_sale", "end_sale", "release_hold", "export_orders", "audit_sale"] as const

const secondsBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]

export function createMetrics() {
  const requests = new Counter(
    "flashsale_requests_total",
    "Answers by endpoint and outcome (a decision's outcome, an error code, ok, or /health's status).",
    endpoints.flatMap((e) => outcomeNames.map((o) => `endpoint="${e}",outcome="${o}"`)),
  )
  const expectedCell = new Uint8Array(endpoints.length * O)
  endpoints.forEach((e, i) => expected[e].forEach((o) => (expectedCell[i * O + outcomeIndex.get(o)!] = 1)))
  const duration = new Histogram("flashsale_request_duration_seconds", "Time from the request's arrival to its answer, by endpoint.", secondsBuckets, labelSets("endpoint", endpoints))
  const batchSize = new Histogram("flashsale_batch_size", "Decisions per script call (Redis engine), by decision.", [1, 2, 4, 8, 16, 32, 64, 128, 256], labelSets("decision", ["checkout", "purchase"]))
  const commitSeconds = new Histogram("flashsale_store_commit_seconds", "Time of one durable-store transaction (SQLite for embedded, PostgreSQL for the Redis engine's ledger).", [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5])
  const commitRows = new Histogram("flashsale_store_commit_rows", "Decisions written by one durable-store transaction.", [1, 10, 50, 100, 250, 500, 1000, 2000, 5000])
  const commitFailures = new Counter("flashsale_store_commit_failures_total", "Durable-store transactions that failed.")
  const rebuilds = new Counter("flashsale_rebuilds_total", "Times a sale's live state was rebuilt from the durable store.")
  const knownAnswers = new Counter("flashsale_known_answers_total", "Checkouts refused sold_out or item_sold by this process from what Redis told it within the last second, with no checkout script call (Redis engine).")
  const adminActions = new Counter("flashsale_admin_actions_total", "Operator actions kept (admin_actions), by action.", labelSets("action", adminActionNames))
  const rateLimited = new Counter("flashsale_rate_limited_total", "Requests refused by admission control (429 rate_limited), by the bucket that refused.", labelSets("by", ["user", "ip"]))
  const lag = new Histogram("flashsale_event_loop_lag_seconds", "How late a 100 ms timer fired: time the event loop was busy.", [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1])
  const startedAt = performance.timeOrigin / 1000
  let sampler: ReturnType<typeof setInterval> | undefined

  return {
    /** Counts an answer and, when `startedAt` (performance.now() at arrival) is given, its duration. */
    request(endpoint: Endpoint, outcome: RequestOutcome, startedAt?: number): void {
      const e = endpointIndex[endpoint]
      requests.values[e * O + (outcomeIndex.get(outcome) ?? 0)]!++
      if (startedAt !== undefined) duration.observe((performance.now() - startedAt) / 1000, e)
    },
    /** Answers so far of one endpoint, by outcome (non-zero only). */
    answers(endpoint: Endpoint): Record<string, number> {
      const e = endpointIndex[endpoint]
      const result: Record<string, number> = {}
      for (let o = 0; o < O; o++) if (requests.values[e * O + o]) result[outcomeNames[o]!] = requests.values[e * O + o]!
      return result
    },
    // For the engines:
    batchSize: { observe: (size: number, decision: "checkout" | "purchase") => batchSize.observe(size, decision === "checkout" ? 0 : 1) },
    storeCommit: {
      /** One successful transaction of `rows` decisions that took `seconds`. */
      observe(seconds: number, rows: number) {
        commitSeconds.observe(seconds)
        commitRows.observe(rows)
      },
      failed: () => commitFailures.inc(),
    },
    rebuilds: { inc: () => rebuilds.inc() },
    knownAnswers: { add: (n: number) => knownAnswers.inc(0, n) },
    rateLimited: { inc: (by: "user" | "ip") => rateLimited.inc(by === "user" ? 0 : 1) },
    adminActions: { inc: (action: string) => adminActions.inc(Math.max(0, adminActionNames.indexOf(action as never))) },

    /** Samples event-loop lag every 100 ms until stopSampling(); the timer does not keep the process alive. */
    startSampling(): void {
      if (sampler) return
      let expectedAt = performance.now() + 100
      sampler = setInterval(() => {
        const now = performance.now()
        lag.observe(Math.max(0, now - expectedAt) / 1000)
        expectedAt = now + 100
      }, 100)
      sampler.unref?.()
    },
    stopSampling(): void {
      clearInterval(sampler)
      sampler = undefined
    },

    /** The exposition: this module's series, the process's, then `extra` (scrape-time gauges, already formatted). */
    render(extra: string[] = []): string {
      const out: string[] = []
      requests.render(out, (i) => requests.values[i]! > 0 || expectedCell[i] === 1)
      duration.render(out, (i) => endpoints[i] !== "events")
      for (const m of [batchSize, commitSeconds, commitRows, commitFailures, rebuilds, knownAnswers, rateLimited, lag]) m.render(out)
      adminActions.render(out)
      processMetrics(out, startedAt)
      out.push(...extra)
      return out.join("\n") + "\n"
    },
  }
}

export type Metrics = ReturnType<typeof createMetrics>
/** What an engine may record. */
export type EngineMetrics = Pick<Metrics, "batchSize" | "storeCommit" | "rebuilds" | "adminActions" | "knownAnswers">

/** The process's metrics, under the names Prometheus client libraries use for them. */
function processMetrics(out: string[], startedAt: number): void {
  const cpu = process.cpuUsage()
  const memory = process.memoryUsage()
  const counter = (name: string, help: string, value: number) => {
    head(out, name, "counter", help)
    out.push(`${name} ${number(value)}`)
  }
  counter("process_cpu_user_seconds_total", "User CPU time spent, in seconds.", cpu.user / 1e6)
  counter("process_cpu_system_seconds_total", "System CPU time spent, in seconds.", cpu.system / 1e6)
  counter("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", (cpu.user + cpu.system) / 1e6)
  gauge(out, "process_resident_memory_bytes", "Resident memory size, in bytes.", [["", memory.rss]])
  gauge(out, "process_heap_bytes", "JavaScript heap size, in bytes.", [["", memory.heapTotal]])
  gauge(out, "flashsale_heap_used_bytes", "JavaScript heap in use, in bytes.", [["", memory.heapUsed]])
  gauge(out, "process_start_time_seconds", "Start time of the process since the Unix epoch, in seconds.", [["", startedAt]])
  try {
    gauge(out, "process_open_fds", "Open file descriptors.", [["", readdirSync("/proc/self/fd").length]])
  } catch {} // not Linux
}

/** One worker's exposition (as render() writes it: HELP and TYPE, then the family's samples), and its number. */
export type WorkerExposition = { worker: number; text: string }

/** A sample line with `worker="<n>"` added to its labels. */
function withWorker(line: string, worker: number): string {
  const space = line.lastIndexOf(" ")
  const series = line.slice(0, space)
  const brace = series.indexOf("{")
  const labelled = brace < 0 ? `${series}{worker="${worker}"}` : `${series.slice(0, -1)}${series.endsWith("{}") ? "" : ","}worker="${worker}"}`
  return `${labelled}${line.slice(space)}`
}

/**
 * Several workers' expositions as one: the families in the order first met, announced once, each sample labelled
 * with its worker (`worker="<n>"`), except the families `shared` names (the engine's gauges, read once by the worker
 * scraped). Every worker's series stays whole, so a worker missing from one scrape is a gap, not a drop in a sum,
 * and a restarted worker is a counter reset of its own series only: Prometheus's rate() and increase() handle
 * both. Add the workers up with sum without(worker).
 */
export function labelWorkers(expositions: WorkerExposition[], shared: (family: string) => boolean): string {
  const families = new Map<string, { head: string[]; samples: string[] }>()
  for (const { worker, text } of expositions) {
    let family: { head: string[]; samples: string[] } | undefined
    let labelled = true
    let help = ""
    for (const line of text.split("\n")) {
      if (line.startsWith("# HELP ")) help = line
      else if (line.startsWith("# TYPE ")) {
        const name = line.split(" ")[2]!
        family = families.get(name)
        if (!family) families.set(name, (family = { head: [help, line], samples: [] }))
        labelled = !shared(name)
      } else if (line && family) family.samples.push(labelled ? withWorker(line, worker) : line)
    }
  }
  const out: string[] = []
  for (const family of families.values()) out.push(...family.head, ...family.samples)
  return out.join("\n") + "\n"
}

/** The process's series, for code that does not get one passed (main.ts and the engines by default). */
export const metrics = createMetrics()
