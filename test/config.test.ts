import { describe, expect, test } from "bun:test"
import { ConfigError, parseConfig, redact } from "../src/config"

const both = { REDIS_URL: "redis://127.0.0.1:6379/0", DATABASE_URL: "postgres://u:p@127.0.0.1:5432/db" }
const parse = (argv: string[], env: Record<string, string> = both) => {
  const parsed = parseConfig(argv, env)
  if (parsed.help) throw new Error("unexpected help")
  return parsed.config
}

describe("configuration", () => {
  test("defaults follow the contract", () => {
    expect(parse([], {})).toEqual({ port: 8080, redisUrl: undefined, databaseUrl: undefined, dataDir: "./data", saleItems: 10000, userLimit: 10, salePeriodSeconds: 3600, holdSeconds: 300, commitWaitMs: 50,
      catalogFile: undefined, rateLimitPerUser: 20, rateLimitPerIp: 0, rateLimitBurstSeconds: 2, trustProxyHops: 0 })
  })

  test("flags override the environment, as --name value or --name=value", () => {
    expect(parse(["--port", "9000", "--sale-items=50"], { ...both, PORT: "1", SALE_ITEMS: "2" })).toMatchObject({ port: 9000, saleItems: 50 })
  })

  test("one error names every bad value with what it expected", () => {
    let error: unknown
    try {
      parse(["--hold-seconds", "0", "--bogus"], { ...both, PORT: "70000", USER_LIMIT: "ten" })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    for (const part of ["PORT (--port): expected a whole number from 0 to 65535", "USER_LIMIT", "HOLD_SECONDS", "--bogus: unknown argument"]) expect(message).toContain(part)
  })

  test("only one of REDIS_URL and DATABASE_URL is an error", () => {
    expect(() => parse([], { REDIS_URL: both.REDIS_URL })).toThrow(/set both .* or neither/)
  })

  test("admission control and the catalog are options like the others; 0 turns a rate limit off", () => {
    expect(parse(["--rate-limit-per-user", "0", "--rate-limit-per-ip=50", "--trust-proxy-hops", "1"], { ...both, CATALOG_FILE: "/srv/items.csv" })).toMatchObject({ rateLimitPerUser: 0, rateLimitPerIp: 50, trustProxyHops: 1, catalogFile: "/srv/items.csv" })
    expect(() => parse([], { ...both, RATE_LIMIT_PER_USER: "-1", RATE_LIMIT_BURST_SECONDS: "0" })).toThrow(/RATE_LIMIT_PER_USER[\s\S]*RATE_LIMIT_BURST_SECONDS/)
  })

  test("it tells which options were given rather than left at their default", () => {
    const parsed = parseConfig(["--sale-items", "5"], { PORT: "1" })
    expect(parsed.help === false && [...parsed.given].sort()).toEqual(["port", "saleItems"])
  })

  test("--help asks for the help text", () => {
    expect(parseConfig(["--port", "1", "--help"], {})).toEqual({ help: true })
  })

  test("passwords in URLs are hidden", () => {
    expect(redact("at postgres://app:s3cret@db:5432/x and redis://:pw@r:6379")).toBe("at postgres://app:***@db:5432/x and redis://:***@r:6379")
  })
})
