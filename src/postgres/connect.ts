/** Reaching PostgreSQL at start: whether it answers, and if not, whether waiting can fix it. */
import postgres from "postgres"
import type { Verdict } from "../sale/engine"

/**
 * SQLSTATEs and driver codes that waiting cannot fix: the database does not exist, the role or password is
 * refused, the user may not connect, a URL parameter the server rejects (postgres.js passes unknown ones on as
 * settings), or TLS asked of a server without it. Everything else (refused, timed out, starting up, too many
 * connections, a name that does not resolve yet) may come right: wait.
 */
const wrongCodes: Record<string, string> = {
  "3D000": "the database does not exist",
  "28000": "the role is refused (it does not exist, or pg_hba.conf has no entry for it)",
  "28P01": "the password is refused",
  "42501": "the role may not connect to this database",
  "42704": "the server rejects a parameter of the URL (postgres.js passes unknown ones to the server as settings)",
  "22023": "the server rejects the value of a parameter of the URL",
  SSL_NOT_SUPPORTED: "the URL asks for TLS (sslmode/ssl), but the server does not support it",
  AUTH_TYPE_NOT_IMPLEMENTED: "the server asks for an authentication method the driver does not support",
  SASL_SIGNATURE_MISMATCH: "the server's SCRAM signature does not match",
}

export function postgresVerdict(error: unknown): Verdict {
  const { code, message } = error as { code?: string; message?: string }
  const why = code ? wrongCodes[code] : undefined
  const text = message ?? String(error)
  return why ? { kind: "wrong", reason: `${why}: ${text}` } : { kind: "wait", reason: text }
}

/** Whether the URL asks for TLS: postgres.js reads `ssl` and `sslmode` (`disable` and `prefer` do not insist on it). */
const asksForTls = (url: string) => {
  try {
    const params = new URL(url).searchParams
    const mode = params.get("sslmode") ?? params.get("ssl")
    return mode !== null && !["disable", "false", "prefer", "allow"].includes(mode)
  } catch {
    return false
  }
}

/**
 * Whether the server at the URL's address answers PostgreSQL's SSLRequest with "N" (no TLS here). Asked only
 * when a URL that insists on TLS cannot connect: what the driver says then depends on timing.
 */
export async function refusesTls(url: string, timeoutMs = 1000): Promise<boolean> {
  const u = new URL(url)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    const done = (answer: boolean) => (clearTimeout(timer), resolve(answer))
    Bun.connect({
      hostname: u.hostname,
      port: Number(u.port || 5432),
      socket: {
        // Length 8, then the SSLRequest code 80877103.
        open: (socket) => void socket.write(new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47])),
        data: (socket, data) => {
          done(data[0] === 78) // "N"
          socket.end()
        },
        error: () => done(false),
        connectError: () => done(false),
      },
    }).catch(() => done(false))
  })
}

/** One connection, one `select 1`; throws with a Verdict (`verdict`) when PostgreSQL cannot be used. */
export async function probePostgres(url: string, timeoutSeconds = 2): Promise<void> {
  const sql = postgres(url, { max: 1, connect_timeout: timeoutSeconds, idle_timeout: 1, onnotice: () => {} })
  try {
    await sql`select 1`
  } catch (error) {
    let verdict = postgresVerdict(error)
    if (verdict.kind === "wait" && asksForTls(url) && (await refusesTls(url))) verdict = { kind: "wrong", reason: wrongCodes.SSL_NOT_SUPPORTED! }
    throw Object.assign(new Error(verdict.reason), { verdict })
  } finally {
    await sql.end({ timeout: 0 }).catch(() => {})
  }
}
