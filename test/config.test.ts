import { describe, expect, test } from "bun:test"
import { ConfigError, helpText, options, parseConfig, secretValues } from "../src/config"
import { displayUrl, redact, redactor } from "../src/redact"

const both = { REDIS_URL: "redis://127.0.0.1:6379/0", DATABASE_URL: "postgres://u:p@127.0.0.1:5432/db" }
const parse = (argv: string[], env: Record<string, string> = both) => {
  const parsed = parseConfig(argv, env)
  if (parsed.help) throw new Error("unexpected help")
  return parsed.config
}

describe("configuration", () => {
  test("defaults follow the contract", () => {
    expect(parse([], {})).toEqual({ port: 8080, host: "0.0.0.0", redisUrl: undefined, databaseUrl: undefined, dataDir: "./data", saleItems: 10000, userLimit: 10, salePeriodSeconds: 3600, holdSeconds: 300, saleShards: 1, commitWaitMs: 50,
      catalogFile: undefined, rateLimitPerUser: 20, rateLimitPerIp: 0, rateLimitBurstSeconds: 2, trustProxyHops: 0, saleSchedule: "recurring", adminToken: undefined, adminTokenFile: undefined, corsOrigins: [], workers: 1 })
  })

  test("flags override the environment, as --name value or --name=value", () => {
    expect(parse(["--port", "9000", "--sale-items=50"], { ...both, PORT: "1", SALE_ITEMS: "2" })).toMatchObject({ port: 9000, saleItems: 50 })
  })

  test("one error names every bad value with what it expected", () => {
    let error: unknown
    try {
      parse(["--hold-seconds", "0", "--sale-shards", "65", "--bogus"], { ...both, PORT: "70000", USER_LIMIT: "ten" })
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ConfigError)
    const message = (error as Error).message
    for (const part of ["PORT (--port): expected a whole number from 0 to 65535", "USER_LIMIT", "HOLD_SECONDS", "SALE_SHARDS (--sale-shards): expected a whole number from 1 to 64", "--bogus: unknown flag"]) expect(message).toContain(part)
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

  test("--help's columns line up, however long a flag is", () => {
    const rows = helpText().split("\n").filter((line) => line.startsWith("  --") && !line.startsWith("  --help"))
    expect(rows.length).toBe(options.length)
    const envColumn = new Set(rows.map((row, i) => row.indexOf(` ${options[i]!.env} `)))
    const helpColumn = new Set(rows.map((row, i) => row.indexOf(options[i]!.help)))
    expect({ envColumns: envColumn.size, helpColumns: helpColumn.size }).toEqual({ envColumns: 1, helpColumns: 1 })
  })

  test("--help asks for the help text", () => {
    expect(parseConfig(["--port", "1", "--help"], {})).toEqual({ help: true })
  })

  test("passwords in URLs are hidden", () => {
    expect(redact("at postgres://app:s3cret@db:5432/x and redis://:pw@r:6379")).toBe("at postgres://app:***@db:5432/x and redis://:***@r:6379")
  })

  // Each URL with every spelling its secret could be printed in: as written, decoded, encoded.
  const hostile: { url: string; secrets: string[]; shown: string }[] = [
    { url: "redis://:p%40ss%3Aw0rd@cache:6379/0", secrets: ["p%40ss%3Aw0rd", "p@ss:w0rd"], shown: "redis://:***@cache:6379/0" },
    { url: "redis://app:p@ss@word@cache:6379", secrets: ["p@ss@word", "p%40ss%40word"], shown: "redis://app:***@cache:6379" },
    { url: "rediss://default:tok:en/42@cache:6380", secrets: ["tok:en/42", "tok%3Aen%2F42"], shown: "rediss://***" },
    { url: "postgres://app:%E2%82%ACuro%20pw@db:5432/shop", secrets: ["%E2%82%ACuro%20pw", "€uro pw"], shown: "postgres://app:***@db:5432/shop" },
    { url: "postgres://db:5432/shop?user=app&password=hunter22&sslmode=require", secrets: ["hunter22"], shown: "postgres://db:5432/shop?user=app&password=***&sslmode=require" },
    { url: "postgresql://db/shop?PassWord=p%26q%3Dr", secrets: ["p%26q%3Dr", "p&q=r"], shown: "postgresql://db/shop?PassWord=***" },
    { url: "redis://:onlypassword@cache:6379", secrets: ["onlypassword"], shown: "redis://:***@cache:6379" },
  ]

  test("no spelling of a configured URL's secret survives redaction, whatever the URL holds", () => {
    for (const { url, secrets, shown } of hostile) {
      const scrub = redactor([url])
      const text = `connecting to ${url}; auth ${secrets.join(" and ")} failed ("${url}")`
      for (const secret of secrets) {
        expect(scrub(text)).not.toContain(secret)
        expect(displayUrl(url)).not.toContain(secret)
      }
      expect(displayUrl(url).startsWith(shown)).toBe(true)
    }
  })

  test("an unconfigured URL in a text loses its password and secret parameters too", () => {
    for (const { url, secrets } of hostile) for (const secret of secrets.slice(0, 1)) expect(redact(`error at ${url} here`)).not.toContain(secret)
    expect(redact("redis://onlyuser@cache:6379")).toBe("redis://onlyuser@cache:6379")
  })

  test("a password the drivers would misread is refused, naming the fix and not the password", () => {
    for (const [redisUrl, databaseUrl, fix] of [
      ["redis://127.0.0.1:6379/0", "postgres://postgres:p@ssw0rd,2024@127.0.0.1:5432/db", "%40"],
      ["redis://:100%pw1@127.0.0.1:6379/0", "postgres://u@127.0.0.1/db", "%25"],
      ["redis://127.0.0.1:6379/0", "postgres://postgres:100%pw1@127.0.0.1:5432/db", "%25"],
      ["redis://:%E0%A4%A@127.0.0.1:6379/0", "postgres://u@127.0.0.1/db", "URL"],
    ]) {
      let message = ""
      try {
        parseConfig([], { REDIS_URL: redisUrl!, DATABASE_URL: databaseUrl! })
      } catch (error) {
        message = (error as Error).message
      }
      expect(message).toContain(fix!)
      for (const secret of ["ssw0rd", "100%pw1", "pw1", "%E0%A4%A"]) expect(message).not.toContain(secret)
    }
    expect(parse([], { REDIS_URL: "redis://:p%40ss%3Aw@h:1/0", DATABASE_URL: "postgres://u:a%25b@h/db" }).redisUrl).toBe("redis://:p%40ss%3Aw@h:1/0")
  })

  test("secret values are collected from the environment and from flags in both spellings", () => {
    expect(secretValues(["--redis-url", "redis://:a1b2@h", "--database-url=postgres://:c3d4@h/db", "--port", "9"], { REDIS_URL: "redis://:e5f6@h" }).sort()).toEqual(["postgres://:c3d4@h/db", "redis://:a1b2@h", "redis://:e5f6@h"])
  })

  test("a bad URL is named without its value, and a mistyped flag is not echoed", () => {
    const problem = (argv: string[], env: Record<string, string>) => {
      try {
        parseConfig(argv, env)
      } catch (error) {
        return (error as Error).message
      }
      throw new Error("expected a ConfigError")
    }
    const message = problem(["--redis_url=redis://:s3cr3t@h:1", "stray-s3cr3t"], { REDIS_URL: "redis//:s3cr3t@h", DATABASE_URL: "mysql://u:s3cr3t@h/db" })
    expect(message).toContain("REDIS_URL")
    expect(message).toContain("DATABASE_URL")
    expect(message).toContain("--redis_url: unknown flag")
    expect(message).not.toContain("s3cr3t")
  })
})
