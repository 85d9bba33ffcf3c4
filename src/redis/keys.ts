/**
 * Every Redis key the server uses. A sale's keys share one hash tag, so that one script call touches one
 * slot: {sale:S} for the whole sale when SALE_SHARDS is 1, or, with SALE_SHARDS=N > 1, one tag per
 * shard k, {sale:S:k} or {sale:S:k:salt}, each holding the same eight keys for its part of the sale (see
 * redis/shards.ts for what each part holds). A "part" is what is inside the braces after "sale:": "S",
 * "S:k" or "S:k:salt", as the registry keeps it.
 *
 * Shard k's tag takes the smallest salt (none first) that puts its slot in the middle half of the k-th
 * N-th of the 16384 slots. A cluster whose masters own equal runs of slots, as redis-cli --cluster create
 * makes them, so gets an equal share of every sale's shards when N is a multiple of the masters.
 */

import { shardOfCode } from "../sale/codes"

/** Most shards one sale may be split into: a code names its shard in one character (sale/codes.ts). */
export const maxShards = 64

const clusterSlots = 16384

/** The Redis Cluster hash slot of a hash tag's content: CRC16 (XMODEM) mod 16384. */
export function slotOf(tag: string): number {
  let crc = 0
  for (const byte of new TextEncoder().encode(tag)) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % clusterSlots
}

const partsCache = new Map<string, string[]>()

/** The parts of a sale: the whole sale as one part, or one part per shard. */
export function partsOf(saleId: number, shards: number): string[] {
  if (shards === 1) return [String(saleId)]
  const key = `${saleId}/${shards}`
  let parts = partsCache.get(key)
  if (!parts) {
    const width = clusterSlots / shards
    parts = Array.from({ length: shards }, (_, k) => {
      for (let salt = 0; ; salt++) {
        const part = salt === 0 ? `${saleId}:${k}` : `${saleId}:${k}:${salt}`
        const slot = slotOf(`sale:${part}`)
        if (slot >= k * width + width / 4 && slot < (k + 1) * width - width / 4) return part
      }
    })
    if (partsCache.size > 64) partsCache.clear()
    partsCache.set(key, parts)
  }
  return parts
}

/**
 * Which shard holds what, in a sale split into `shards` (redis/shards.ts): an item lives, with all of its units,
 * on the shard of its place among the sale's items, mod N; an item the sale does not have is refused on shard 0.
 */
export function itemShard(position: number, shards: number): number {
  return position >= 0 ? position % shards : 0
}

/** The shard that counts a user: FNV-1a of the id's UTF-16 code units, mod N. Every instance must compute the same. */
export function userShard(userId: string, shards: number): number {
  let h = 0x811c9dc5
  for (let i = 0; i < userId.length; i++) h = Math.imul(h ^ userId.charCodeAt(i), 0x01000193)
  return (h >>> 0) % shards
}

/** The shard a code names, or undefined if it names none of this sale's shards. */
export function codeShard(code: string, shards: number): number | undefined {
  const shard = shardOfCode(code)
  return shard >= 0 && shard < shards ? shard : undefined
}

/** The part of shard `shard` of a sale split into `shards`. */
export const shardPart = (saleId: number, shard: number, shards: number) => partsOf(saleId, shards)[shard]!

export const saleOfPart = (part: string) => Number(part.split(":")[0])
/** The shard a part holds, or undefined for a whole sale. */
export const shardOfPart = (part: string): number | undefined => (part.includes(":") ? Number(part.split(":")[1]) : undefined)

/** The keys of one part (a sale id for a whole sale), in the order every script expects them in KEYS (see lua/prelude.lua). */
export function saleKeys(part: string | number): string[] {
  const tag = `{sale:${part}}`
  return [`${tag}:items`, `${tag}:codes`, `${tag}:users`, `${tag}:exp`, `${tag}:stats`, `${tag}:log`, `${tag}:free`, `${tag}:avail`]
}

/** How many keys saleKeys() names: every script takes exactly these. */
export const saleKeyCount = 8

/** The layout of a part's keys (lua/prelude.lua): a part initialised by an earlier version lacks it, and is rebuilt. */
export const layoutVersion = "2"

/** The hash of a part's settings and counters, whose layout version marks it as initialised. */
export const statsKey = (part: string | number) => `{sale:${part}}:stats`

/** A part's available units per item (lua/prelude.lua): what /items reads. */
export const availKey = (part: string | number) => `{sale:${part}}:avail`

/** Held by the instance that changes a sale's settings (an operator's action), and by one that puts a part right. */
export const settingsLockKey = (part: string | number) => `{sale:${part}}:settings-lock`

/** Per-user counts of purchases plus live holds. */
export const usersKey = (part: string | number) => `{sale:${part}}:users`

/** The part's journal (redis/journal.ts). */
export const logKey = (part: string | number) => `{sale:${part}}:log`

/** Held briefly by the instance that recovers a part's journal, so that instances do not all do the same work. */
export const drainLockKey = (part: string | number) => `{sale:${part}}:drain`

/** Held by the one instance that does a piece of work once for all (a sale's audit). */
export const onceKey = (key: string) => `flashsale:once:${key}`

/** Set of the parts ("S" or "S:k") whose journal the ledger recovers. */
export const saleRegistryKey = "flashsale:sales"

/** SALE_SHARDS as the first instance on this Redis set it: every instance must use the same, or stock would be split two ways. */
export const shardsMarkerKey = "flashsale:sale_shards"
