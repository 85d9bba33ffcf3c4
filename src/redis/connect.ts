/**
 * Connecting to Redis from one URL: a plain server, or any node (master or replica) of a Redis Cluster,
 * which is detected and then served by a cluster client seeded from that node.
 */
import Redis, { Cluster } from "ioredis"

/** What the engine needs of a Redis connection, plain or clustered. */
export type RedisClient = Redis | Cluster

type Options = { enableOfflineQueue: boolean; maxRetriesPerRequest: number; commandTimeout: number; enableAutoPipelining?: boolean }

/** Whether the server behind the URL runs in cluster mode (INFO cluster answers on every Redis, clustered or not). */
export async function isCluster(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false })
  probe.on("error", () => {})
  try {
    await probe.connect()
    return /^cluster_enabled:1\s*$/m.test(await probe.info("cluster"))
  } finally {
    probe.disconnect()
  }
}

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
