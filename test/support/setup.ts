/** Preloaded by bunfig.toml: one throwaway redis-server and postgres for the whole run, unless TEST_REDIS_URL / TEST_DATABASE_URL name running ones. */
import { afterAll } from "bun:test"
import { preflight } from "./preflight"
import { startPostgres, startRedis, type PostgresServer, type RedisServer } from "./services"

preflight()

let redis: RedisServer | undefined
let pg: PostgresServer | undefined

try {
  if (process.env.TEST_REDIS_URL) process.env.FS_TEST_REDIS_URL = process.env.TEST_REDIS_URL
  else {
    redis = await startRedis()
    process.env.FS_TEST_REDIS_URL = redis.url
  }
  if (process.env.TEST_DATABASE_URL) process.env.FS_TEST_DATABASE_URL = process.env.TEST_DATABASE_URL
  else {
    pg = await startPostgres()
    process.env.FS_TEST_DATABASE_URL = pg.url
  }
} catch (error) {
  // Tests that need a service then fail on sharedServices(), never skip.
  console.error(`test services could not start: ${(error as Error).message}`)
}

afterAll(async () => {
  await Promise.allSettled([redis?.stop(), pg?.stop()])
})
