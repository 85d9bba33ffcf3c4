/** Typed configuration from environment variables and `--flag value` arguments. Only this file reads the environment. */
import { availableParallelism } from "node:os"
import { displayUrl } from "./redact"

export type Config = {
  /** HTTP port; 0 picks a free one. */
  port: number
  /** The address to listen on: 0.0.0.0 (every IPv4 interface), 127.0.0.1 (this machine only), :: (IPv6), ... */
  host: string
  /** `redis://host:port/db`; with databaseUrl selects the Redis + PostgreSQL engine. */
  redisUrl: string | undefined
  /** `postgres://user:pass@host:port/db`. */
  databaseUrl: string | undefined
  /** Where the embedded engine keeps its SQLite file. */
  dataDir: string
  /** Items per sale, ids 1..saleItems. */
  saleItems: number
  /** Items one user may hold or buy per sale. */
  userLimit: number
  /** Length of a sale in seconds; sales are aligned to the Unix epoch. */
  salePeriodSeconds: number
  /** How long a checkout holds its item, in seconds. */
  holdSeconds: number
  /** Redis engine: how many hash tags (so, on a cluster, masters) one sale is split over; every instance must agree. */
  saleShards: number
  /** Redis engine: how long a success waits for its PostgreSQL commit before it is answered from the Redis journal. */
  commitWaitMs: number
  /** CSV or JSON lines of the shop's items (src/catalog.ts); unset: generated names and images. */
  catalogFile: string | undefined
  /** Checkouts per second one user_id may make (and purchases per second per code); 0 turns it off. */
  rateLimitPerUser: number
  /** Checkouts plus purchases per second from one client IP; 0 (the default) turns it off. */
  rateLimitPerIp: number
  /** A bucket holds this many seconds of its rate, so a client may burst to rate × this. */
  rateLimitBurstSeconds: number
  /** Proxies in front of the server whose X-Forwarded-For is believed; 0 ignores the header. */
  trustProxyHops: number
  /** recurring: a sale every period, aligned to the epoch; planned: only the sales operators create. */
  saleSchedule: "recurring" | "planned"
  /** The operator API's bearer token (at least 32 characters); unset: /admin is 404. */
  adminToken: string | undefined
  /** A file holding the token instead (read at start). */
  adminTokenFile: string | undefined
  /** Origins a storefront may call the public endpoints from (CORS), or "*" for any; empty: none. */
  corsOrigins: string[]
  /** Redis engine: processes serving the port together (src/supervisor.ts); 1 serves in this process. */
  workers: number
}

type Option = {
  env: string
  flag: string
  key: keyof Config
  default: string
  help: string
  parse: (raw: string) => Config[keyof Config] | Error
  /** May hold a password: a bad value is shown only in its display form (src/redact.ts), or not at all. */
  secret?: true
}

const integer = (min: number, max: number) => (raw: string) => {
  if (!/^\d+$/.test(raw)) return new Error(`expected a whole number from ${min} to ${max}`)
  const n = Number(raw)
  return n >= min && n <= max ? n : new Error(`expected a whole number from ${min} to ${max}`)
}

const url = (schemes: string[]) => (raw: string) => {
  if (raw === "") return undefined
  // The drivers read the userinfo their own way: a second "@" makes postgres.js take part of the password for
  // the host (and print it in its errors), and a "%" that is not an escape makes both throw later, mid-start.
  const authority = raw.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").split(/[/?#]/)[0] ?? ""
  if (authority.split("@").length > 2) return new Error("the user or password holds an unencoded @: write it as %40")
  const userinfo = authority.slice(0, Math.max(authority.lastIndexOf("@"), 0))
  if (/%(?![0-9a-f]{2})/i.test(userinfo)) return new Error("the user or password holds a % that is not an escape: write it as %25")
  try {
    decodeURIComponent(userinfo)
    const parsed = new URL(raw)
    if (schemes.includes(parsed.protocol) && parsed.hostname) return raw
  } catch {}
  return new Error(`expected a URL like ${schemes[0]}//host:port/...`)
}

const text = (raw: string) => (raw === "" ? new Error("expected a non-empty path") : raw)

const oneOf = <T extends string>(...values: T[]) => (raw: string) => ((values as string[]).includes(raw) ? (raw as T) : new Error(`expected ${values.join(" or ")}`))

/** A token long enough that guessing it is hopeless. */
const token = (raw: string) => (raw === "" ? undefined : raw.length >= 32 && !/\s/.test(raw) ? raw : new Error("expected at least 32 characters without spaces (openssl rand -hex 32 makes one)"))

/** "*", or origins like https://shop.example (scheme, host, optional port; no path). */
const origins = (raw: string) => {
  const list = raw.split(",").map((o) => o.trim()).filter(Boolean)
  if (list.length === 1 && list[0] === "*") return list
  const bad = list.filter((o) => {
    try {
      const u = new URL(o)
      return !/^https?:$/.test(u.protocol) || u.origin !== o.replace(/\/$/, "")
    } catch {
      return true
    }
  })
  return bad.length > 0 ? new Error(`expected * or origins like https://shop.example (no path), separated by commas; not ${bad.join(", ")}`) : list.map((o) => o.replace(/\/$/, ""))
}

/** A count of processes, or `auto`: one per core this process may use. */
const processCount = (raw: string) => {
  if (raw === "auto") return availableParallelism()
  const n = integer(1, 1024)(raw)
  return n instanceof Error ? new Error("expected a whole number from 1 to 1024, or auto (one per core)") : n
}

/** An IPv4 or IPv6 address, or a host name, as the listener takes it ([::1] is ::1). */
const address = (raw: string) => {
  const bare = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw
  return /^[A-Za-z0-9.-]+$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$/.test(bare) ? bare : new Error("expected an address to listen on, like 0.0.0.0, 127.0.0.1 or ::")
}

export const options: Option[] = [
  { env: "PORT", flag: "port", key: "port", default: "8080", help: "HTTP port (0 picks a free one)", parse: integer(0, 65535) },
  { env: "HOST", flag: "host", key: "host", default: "0.0.0.0", help: "address to listen on (127.0.0.1: this machine only)", parse: address },
  { env: "REDIS_URL", flag: "redis-url", key: "redisUrl", default: "", help: "redis://host:port/db", parse: url(["redis:", "rediss:"]), secret: true },
  { env: "DATABASE_URL", flag: "database-url", key: "databaseUrl", default: "", help: "postgres://user:pass@host:port/db", parse: url(["postgres:", "postgresql:"]), secret: true },
  { env: "DATA_DIR", flag: "data-dir", key: "dataDir", default: "./data", help: "where the embedded engine keeps its SQLite file", parse: text },
  { env: "SALE_ITEMS", flag: "sale-items", key: "saleItems", default: "10000", help: "items per sale", parse: integer(1, 1_000_000) },
  { env: "USER_LIMIT", flag: "user-limit", key: "userLimit", default: "10", help: "items per user per sale", parse: integer(1, 1_000_000) },
  { env: "SALE_PERIOD_SECONDS", flag: "sale-period-seconds", key: "salePeriodSeconds", default: "3600", help: "length of a sale", parse: integer(1, 31_536_000) },
  { env: "HOLD_SECONDS", flag: "hold-seconds", key: "holdSeconds", default: "300", help: "how long a checkout holds its item", parse: integer(1, 86_400) },
  { env: "SALE_SHARDS", flag: "sale-shards", key: "saleShards", default: "1", help: "Redis engine: hash tags one sale is split over (1-64)", parse: integer(1, 64) },
  { env: "COMMIT_WAIT_MS", flag: "commit-wait-ms", key: "commitWaitMs", default: "50", help: "Redis engine: how long a success waits for its PostgreSQL commit", parse: integer(1, 10_000) },
  { env: "CATALOG_FILE", flag: "catalog-file", key: "catalogFile", default: "", help: "CSV (id,name,image[,price]) or JSON lines of the sale's items", parse: (raw) => raw || undefined },
  { env: "RATE_LIMIT_PER_USER", flag: "rate-limit-per-user", key: "rateLimitPerUser", default: "20", help: "requests per second per user_id (0: off)", parse: integer(0, 1_000_000) },
  { env: "RATE_LIMIT_PER_IP", flag: "rate-limit-per-ip", key: "rateLimitPerIp", default: "0", help: "requests per second per client IP (0: off)", parse: integer(0, 1_000_000) },
  { env: "RATE_LIMIT_BURST_SECONDS", flag: "rate-limit-burst-seconds", key: "rateLimitBurstSeconds", default: "2", help: "a client may burst to rate x this", parse: integer(1, 3600) },
  { env: "TRUST_PROXY_HOPS", flag: "trust-proxy-hops", key: "trustProxyHops", default: "0", help: "proxies whose X-Forwarded-For is believed", parse: integer(0, 16) },
  { env: "SALE_SCHEDULE", flag: "sale-schedule", key: "saleSchedule", default: "recurring", help: "recurring (a sale every period) or planned (the sales operators create)", parse: oneOf("recurring", "planned") },
  { env: "ADMIN_TOKEN", flag: "admin-token", key: "adminToken", default: "", help: "the operator API's bearer token, 32+ characters (unset: /admin is off)", parse: token, secret: true },
  { env: "ADMIN_TOKEN_FILE", flag: "admin-token-file", key: "adminTokenFile", default: "", help: "a file holding the operator API's token", parse: (raw) => raw || undefined },
  { env: "CORS_ORIGINS", flag: "cors-origins", key: "corsOrigins", default: "", help: "origins allowed to call the public endpoints from a browser, or *", parse: origins },
  { env: "WORKERS", flag: "workers", key: "workers", default: "1", help: "Redis engine: processes serving the port, or auto (one per core)", parse: processCount },
]

/** One or more settings the server cannot start with; `problems` names each (the message lists them all). */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`)
  }
}

/** `given`: the options set by the environment or a flag rather than left at their default. */
export type Parsed = { help: true } | { help: false; version: boolean; config: Config; given: ReadonlySet<keyof Config> }

/**
 * Every option read once: the config (a bad value left at its default), the options given, and one line per
 * problem. The server starts only without problems; the caller adds its own (the catalog, DATA_DIR) first.
 */
export type Reading = { help?: true; version?: true; config: Config; given: ReadonlySet<keyof Config>; bad: ReadonlySet<keyof Config>; problems: string[] }

/** Reads every option once; throws one ConfigError naming every bad value. */
export function parseConfig(argv: string[], env: Record<string, string | undefined>): Parsed {
  const reading = readOptions(argv, env)
  if (reading.help) return { help: true }
  if (reading.problems.length > 0) throw new ConfigError(reading.problems)
  return { help: false, version: Boolean(reading.version), config: reading.config, given: reading.given }
}

export function readOptions(argv: string[], env: Record<string, string | undefined>): Reading {
  const raw = new Map<Option, string>()
  const problems: string[] = []
  let version = false
  for (const option of options) {
    const value = env[option.env]
    if (value !== undefined) raw.set(option, value)
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--help" || arg === "-h") return { help: true, config: {} as Config, given: new Set(), bad: new Set(), problems: [] }
    if (arg === "--version" || arg === "-v") {
      version = true
      continue
    }
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    const option = match && options.find((o) => o.flag === match[1])
    if (!option) {
      // The argument is not echoed whole: a mistyped --redis_url=... would print its password.
      problems.push(arg.startsWith("--") ? `${arg.replace(/=.*$/, "")}: unknown flag (see --help)` : `argument ${i + 1}: not a --flag (see --help)`)
      continue
    }
    const value = match[2] ?? argv[++i]
    if (value === undefined) problems.push(`--${option.flag}: expected a value`)
    else raw.set(option, value)
  }
  const config = {} as Record<keyof Config, Config[keyof Config]>
  const bad = new Set<keyof Config>()
  for (const option of options) {
    const value = option.parse(raw.get(option) ?? option.default)
    const given = raw.get(option) ?? ""
    if (value instanceof Error) {
      const shown = option.secret ? (option.key === "adminToken" ? `${given.length} characters` : JSON.stringify(displayUrl(given))) : JSON.stringify(given)
      problems.push(`${option.env} (--${option.flag}): ${value.message}, got ${shown}`)
      bad.add(option.key)
      config[option.key] = option.parse(option.default) as Config[keyof Config]
    } else config[option.key] = value
  }
  if (config.adminToken && config.adminTokenFile) {
    problems.push("ADMIN_TOKEN and ADMIN_TOKEN_FILE: set one, not both")
    bad.add("adminToken")
  }
  if (!bad.has("redisUrl") && !bad.has("databaseUrl") && Boolean(config.redisUrl) !== Boolean(config.databaseUrl)) {
    problems.push("REDIS_URL and DATABASE_URL: set both (Redis + PostgreSQL engine) or neither (embedded engine), not just one")
    bad.add("redisUrl")
  }
  const embedded = !bad.has("redisUrl") && !bad.has("databaseUrl") && !config.redisUrl && !config.databaseUrl
  if (embedded && !bad.has("workers") && Number(config.workers) > 1) {
    const given = [...raw].find(([option]) => option.key === "workers")![1]
    problems.push(`WORKERS (--workers) ${given}: the embedded engine keeps a sale's state in its one process; more than one worker needs the Redis engine (REDIS_URL and DATABASE_URL)`)
    bad.add("workers")
  }
  const result: Reading = { config: config as Config, given: new Set([...raw.keys()].map((o) => o.key)), bad, problems }
  if (version) result.version = true
  return result
}

/** What the supervisor (src/supervisor.ts) tells a worker it starts; not settings, so not in --help. */
export type WorkerRole = { index: number; supervisorPid: number; port: number }

/** The environment a worker is started with, over the supervisor's. */
export const workerEnv = (role: WorkerRole) => ({ FLASHSALE_WORKER: String(role.index), FLASHSALE_SUPERVISOR_PID: String(role.supervisorPid), FLASHSALE_WORKER_PORT: String(role.port) })

/** This process's role as a worker, or undefined when no supervisor started it. */
export function workerRole(env: Record<string, string | undefined>): WorkerRole | undefined {
  if (!env.FLASHSALE_WORKER) return undefined
  return { index: Number(env.FLASHSALE_WORKER), supervisorPid: Number(env.FLASHSALE_SUPERVISOR_PID), port: Number(env.FLASHSALE_WORKER_PORT) }
}

export function helpText(): string {
  const flagWidth = Math.max(...options.map((o) => o.flag.length)) + 2
  const envWidth = Math.max(...options.map((o) => o.env.length))
  const rows = options.map((o) => `  ${`--${o.flag}`.padEnd(flagWidth)} ${o.env.padEnd(envWidth)} ${o.help}${o.default ? ` (default ${o.default})` : ""}`)
  return `Usage: flashsale [--flag value ...]\n\nEvery flag can also be set by its environment variable.\n\n${rows.join("\n")}\n  ${"--help".padEnd(flagWidth)} ${"".padEnd(envWidth)} this text\n`
}


/** The values given to options that may hold a password, by environment or flag, so that nothing printed repeats them. */
export function secretValues(argv: string[], env: Record<string, string | undefined>): string[] {
  const secret = options.filter((o) => o.secret)
  const fromFlags = argv.flatMap((arg, i) => {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg)
    return match && secret.some((o) => o.flag === match[1]) ? [match[2] ?? argv[i + 1] ?? ""] : []
  })
  return [...secret.map((o) => env[o.env] ?? ""), ...fromFlags].filter(Boolean)
}
