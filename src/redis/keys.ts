/**
 * Every Redis key the server uses. A sale's keys share one hash tag, so that one script call touches one
 * slot: {sale:S} for the whole sale when SALE_SHARDS is 1, or, with SALE_SHARDS=N > 1, N tags
 * {sale:S:0} .. {sale:S:N-1} ("shards"), each holding the same six keys for its part of the sale (see
 * redis/shards.ts for what each part holds). A "part" names one tag: "S" or "S:k", as the registry keeps it.
 */

/** Most shards one sale may be split into: a code names its shard in one character (sale/codes.ts). */
export const maxShards = 64

/** The parts of a sale: the whole sale as one part, or one part per shard. */
export function partsOf(saleId: number, shards: number): string[] {
  return shards === 1 ? [String(saleId)] : Array.from({ length: shards }, (_, k) => `${saleId}:${k}`)
}

export const saleOfPart = (part: string) => Number(part.split(":")[0])
/** The shard a part holds, or undefined for a whole sale. */
export const shardOfPart = (part: string): number | undefined => (part.includes(":") ? Number(part.split(":")[1]) : undefined)

/** The keys of one part (a sale id for a whole sale), in the order every script expects them in KEYS (see lua/prelude.lua). */
export function saleKeys(part: string | number): string[] {
  const tag = `{sale:${part}}`
  return [`${tag}:items`, `${tag}:codes`, `${tag}:users`, `${tag}:exp`, `${tag}:stats`, `${tag}:log`]
}

/** How many keys saleKeys() names: every script takes exactly these. */
export const saleKeyCount = 6

/** The hash whose existence marks a part as initialised. */
export const statsKey = (part: string | number) => `{sale:${part}}:stats`

/** Per-user counts of purchases plus live holds. */
export const usersKey = (part: string | number) => `{sale:${part}}:users`

/** The part's journal (redis/journal.ts). */
export const logKey = (part: string | number) => `{sale:${part}}:log`

/** Held briefly by the instance that recovers a part's journal, so that instances do not all do the same work. */
export const drainLockKey = (part: string | number) => `{sale:${part}}:drain`

/** Set of the parts ("S" or "S:k") whose journal the ledger recovers. */
export const saleRegistryKey = "flashsale:sales"

/** SALE_SHARDS as the first instance on this Redis set it: every instance must use the same, or stock would be split two ways. */
export const shardsMarkerKey = "flashsale:sale_shards"
