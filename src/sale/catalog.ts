/** Item names and images, generated deterministically from (saleId, itemId) so every instance and engine agrees. */

const adjectives = ["Amber", "Brisk", "Cobalt", "Dapper", "Electric", "Feather", "Golden", "Hidden", "Ivory", "Jade", "Kinetic", "Lunar", "Misty", "Nimble", "Onyx", "Polar", "Quiet", "Rustic", "Solar", "Tidal", "Urban", "Velvet", "Wild", "Zesty"]
const materials = ["Bamboo", "Canvas", "Ceramic", "Copper", "Cotton", "Denim", "Glass", "Granite", "Leather", "Linen", "Maple", "Oak", "Silk", "Steel", "Walnut", "Wool"]
const things = ["Backpack", "Bottle", "Candle", "Chair", "Clock", "Headphones", "Jacket", "Kettle", "Lamp", "Mug", "Notebook", "Pen", "Planter", "Scarf", "Sneakers", "Speaker", "Sunglasses", "Teapot", "Umbrella", "Wallet", "Watch"]

/** 32-bit integer mix (lowbias32): cheap, stable across runtimes. */
function mix(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0
  x = Math.imul(x, 0x7feb352d) >>> 0
  x = (x ^ (x >>> 15)) >>> 0
  x = Math.imul(x, 0x846ca68b) >>> 0
  return (x ^ (x >>> 16)) >>> 0
}

export type Item = { id: number; name: string; image: string }

export function itemOf(saleId: number, itemId: number): Item {
  const h = mix(mix(saleId >>> 0) ^ mix((saleId / 2 ** 32) >>> 0) ^ itemId)
  const name = `${adjectives[h % adjectives.length]} ${materials[(h >>> 8) % materials.length]} ${things[(h >>> 16) % things.length]}`
  return { id: itemId, name, image: `https://picsum.photos/seed/flashsale-${saleId}-${itemId}/480/480` }
}
