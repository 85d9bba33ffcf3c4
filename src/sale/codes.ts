/**
 * Checkout codes: "<sale_id>.<22 chars of base64url>", 128 random bits. The sale id routes a purchase to
 * its sale's keys. In a sale split into shards (redis/shards.ts) the first of the 22 characters names the
 * shard of the code's item instead, so 126 bits are random.
 */

export const codeAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
const pool = new Uint8Array(16 * 256)
let offset = pool.length

export function newCode(saleId: number, shard?: number): string {
  if (offset === pool.length) {
    crypto.getRandomValues(pool)
    offset = 0
  }
  let out = `${saleId}.`
  let bits = 0
  let acc = 0
  for (let i = 0; i < 16; i++) {
    acc = (acc << 8) | pool[offset + i]!
    bits += 8
    while (bits >= 6) {
      bits -= 6
      out += codeAlphabet[(acc >>> bits) & 63]
    }
    acc &= (1 << bits) - 1
  }
  offset += 16
  out += codeAlphabet[(acc << (6 - bits)) & 63]
  if (shard === undefined) return out
  const dot = out.indexOf(".")
  return out.slice(0, dot + 1) + codeAlphabet[shard] + out.slice(dot + 2)
}

/** The shard a well-formed code of a split sale names. */
export function shardOfCode(code: string): number {
  return codeAlphabet.indexOf(code[code.indexOf(".") + 1]!)
}

export const codePattern = "^[0-9]{1,15}\\.[A-Za-z0-9_-]{22}$"
const codeRegex = new RegExp(codePattern)

/** The sale a well-formed code belongs to, or undefined for a malformed one. */
export function saleOfCode(code: string): number | undefined {
  return codeRegex.test(code) ? Number(code.slice(0, code.indexOf("."))) : undefined
}
