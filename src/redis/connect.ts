/**
 * Connecting to Redis from one URL: a plain server, or any node (master or replica) of a Redis Cluster,
 * which is detected and then served by a cluster client seeded from that node.
 */
import Redis, { Cluster } from "ioredis"
import type { Verdict } from "../sale/engine"

/** What the engine needs of a Redis connection, plain or clustered. */
export type RedisClient = Redis | Cluster

type Options = { enableOfflineQueue: boolean; maxRetriesPerRequest: number; commandTimeout: number; enableAutoPipelining?: boolean }

/**
 * A cluster client seeded from the URL's node. The URL's user, password and TLS go into the options
 * every node connection is made with (a seed URL's own credentials would reach the seed alone).
 */
export function clusterClient(url: string, options: Options): Cluster {
  const u = new URL(url)
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0
  if (db !== 0) throw new Error(`REDIS_URL names database ${db}, but a Redis Cluster has database 0 only`)
  const { enableAutoPipelining = false, enableOfflineQueue, ...perNode } = options
  return new Cluster([{ host: u.hostname, port: Number(u.port || 6379) }], {
    enableAutoPipelining,
    enableOfflineQueue,
    lazyConnect: true,
    redisOptions: {
      ...perNode,
      username: u.username ? decodeURIComponent(u.username) : undefined,
      password: u.password ? decodeURIComponent(u.password) : undefined,
      tls: u.protocol === "rediss:" ? {} : undefined,
    },
  })
}

/** A client for the URL: a Cluster when the node is clustered, a plain client otherwise; not yet connected. */
export function redisClient(url: string, cluster: boolean, options: Options): RedisClient {
  return cluster ? clusterClient(url, options) : new Redis(url, { ...options, lazyConnect: true })
}


/** The reasons a Redis refuses that waiting cannot fix: credentials, permissions, a database index it does not have. */
const wrongReplies = /^(WRONGPASS|NOAUTH|NOPERM)\b|DB index is out of range|invalid DB index/

export function redisVerdict(error: unknown): Verdict {
  const message = (error as Error)?.message ?? String(error)
  if (wrongReplies.test(message)) return { kind: "wrong", reason: message.replace(/^NOAUTH HELLO must be called.*$/, "NOAUTH: this Redis needs a password and the URL gives none") }
  return { kind: "wait", reason: message }
}

/**
 * Whether a plain (non-TLS) Redis answers at the URL's address: asked only when a rediss:// URL cannot connect,
 * since a plain server takes the TLS handshake for a command and waits for the rest of it, so the client times out.
 */
export async function answersWithoutTls(url: string, timeoutMs = 1000): Promise<boolean> {
  const u = new URL(url)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    Bun.connect({
      hostname: u.hostname,
      port: Number(u.port || 6379),
      socket: {
        open: (socket) => void socket.write("PING\r\n"),
        data: (socket, data) => {
          clearTimeout(timer)
          resolve(/^[+-]/.test(Buffer.from(data).toString("latin1")))
          socket.end()
        },
        error: () => (clearTimeout(timer), resolve(false)),
        connectError: () => (clearTimeout(timer), resolve(false)),
      },
    }).catch(() => (clearTimeout(timer), resolve(false)))
  })
}

/**
 * Connects once to the URL's node and says whether it is clustered; throws with a Verdict (`verdict`) when it
 * cannot. The reply errors that would only be logged by ioredis (a refused password, a database it does not
 * have) are caught too: without them the client would run on database 0, or retry forever.
 */
export async function probeRedis(url: string, timeoutMs = 2000): Promise<{ cluster: boolean }> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: timeoutMs })
  const errors: Error[] = []
  probe.on("error", (error) => errors.push(error))
  try {
    await probe.connect()
    const info = await probe.info("cluster")
    const refused = errors.find((e) => wrongReplies.test(e.message))
    if (refused) throw refused
    return { cluster: /^cluster_enabled:1\s*$/m.test(info) }
  } catch (error) {
    const cause = errors.find((e) => wrongReplies.test(e.message)) ?? errors[0] ?? error
    let verdict = redisVerdict(cause)
    if (verdict.kind === "wait" && url.startsWith("rediss:") && (await answersWithoutTls(url))) verdict = { kind: "wrong", reason: "the URL asks for TLS (rediss://), but the server at this address speaks plain Redis: use redis://, or turn TLS on in Redis" }
    throw Object.assign(new Error(verdict.reason), { verdict })
  } finally {
    probe.disconnect()
  }
}
