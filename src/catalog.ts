/**
 * CATALOG_FILE, read once at start: the shop's items fix the sale's size (SALE_ITEMS is taken from the file,
 * or must agree with it when given). A bad file is a ConfigError naming the file, the line and what is wrong.
 */
import { readFileSync } from "node:fs"
import { ConfigError, type Config } from "./config"
import { CatalogProblem, fixedCatalog, generatedCatalog, parseCatalog, type Catalog } from "./sale/catalog"

export function withCatalog(config: Config, given: ReadonlySet<keyof Config>): { config: Config; catalog: Catalog } {
  const file = config.catalogFile
  if (!file) return { config, catalog: generatedCatalog }
  const where = `CATALOG_FILE (--catalog-file) ${file}`
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (error) {
    throw new ConfigError([`${where}: cannot read it (${(error as Error).message})`])
  }
  let catalog: Catalog
  try {
    catalog = fixedCatalog(parseCatalog(text))
  } catch (error) {
    if (!(error instanceof CatalogProblem)) throw error
    throw new ConfigError([`${where}, line ${error.line}: ${error.message}`])
  }
  const size = catalog.size!
  if (given.has("saleItems") && config.saleItems !== size) {
    throw new ConfigError([`SALE_ITEMS (--sale-items) is ${config.saleItems}, but ${where} has ${size} items: leave SALE_ITEMS unset or make them agree`])
  }
  return { config: { ...config, saleItems: size }, catalog }
}
