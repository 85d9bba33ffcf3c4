/** Every Redis key the server uses. All keys of one sale share the hash tag {sale:N}, so its scripts run on Redis Cluster. */

/** The keys of one sale, in the order every script expects them in KEYS. */
export function saleKeys(saleId: number): string[] {
  const tag = `{sale:${saleId}}`
  return [`${tag}:meta`, `${tag}:holds`, `${tag}:codes`, `${tag}:sold`, `${tag}:users`, `${tag}:exp`, `${tag}:stats`, `${tag}:log`]
}

export const logKey = (saleId: number) => `{sale:${saleId}}:log`

/** Set of sale ids whose log stream the ledger writer drains. */
export const salesRegistryKey = "flashsale:sales"

export const ledgerGroup = "ledger"
