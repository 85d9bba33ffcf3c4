/**
 * Preloaded by bunfig.toml: one throwaway redis-server and postgres for the whole run (for each worker of
 * `--parallel`), unless TEST_REDIS_URL / TEST_DATABASE_URL name running ones. A watchdog stops them once this
 * process is gone: bun test ends its processes without an exit event, and under `--parallel --no-isolate` a hook
 * after all tests runs after each file, under the next one's feet.
 */
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

const stops = [redis, pg].flatMap((s) => (s ? [s.stopCommand()] : []))
if (stops.length > 0) {
  const watchdog = Bun.spawn(["sh", "-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; ${stops.join("; ")}`], { stdin: "ignore", stdout: "ignore", stderr: "ignore" })
  watchdog.unref()
}
