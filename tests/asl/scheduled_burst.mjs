// A burst of uploads on a schedule: the scheduled Step Functions definition (synthesized: forms/step_functions_schedule.py)
// run in aws-local-stepfunctions 3.0.0 at each firing of its schedule, against the upload world of burst_scenario.mjs
// (its virtual clock, seeded randomness, crawler, Athena table and load lock, copied here: that file is a script) plus
// the ledger's received records and the scheduled runs function (runtime/scheduled_runs.py) simulated on the clock.
//
// stdin:  {"definition", "uploads": [{"name", "at": <simulated s>}], "first_firing": <s>, "interval": <s>, "seed",
//          "world": {... as burst_scenario.mjs, "clean_per_upload_seconds": <s, default 0.5>}, "max_firings": <default 1000>,
//          "max_simulated_seconds"}
// stdout: {"executions": [{"name", "started_at", "ended_at", "status", "error", "cause", "failed_step", "claimed",
//          "ending"}], "uploads": [{"name", "arrived_at", "loaded_at", "run"}], "crawls_started", "loads_committed",
//          "merges_started", "load_conflicts", "max_concurrent_merges", "clean_runs", "simulated_seconds", "trace"}
//
// The scheduled runs function, as runtime/scheduled_runs.py does it on DynamoDB:
// - claim: takes the run lock (a lease: free, the caller's, or past its lease; else {held: true}: Run Already Going),
//   then every upload that has arrived and is received (or failed: a failed run's uploads are retaken), each now
//   running and owned by the run; none: the lock is released ({count: 0}: Nothing To Run).
// - load: the run's uploads reach step load; finish: each ends loaded (at that instant) and the run lock is released.
// - A run that fails: its uploads become failed (what the failure reporter records) and its locks are released, so
//   the next firing retakes them.
// The clean job (glue:startJobRun.sync) takes clean_seconds plus clean_per_upload_seconds per upload of the run.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

function fatal(message) {
  process.stderr.write(`burst_scenario.mjs: ${message}\n`);
  process.exit(2);
}

let request;
try {
  request = JSON.parse(readFileSync(0, 'utf8'));
} catch (err) {
  fatal(`stdin is not one JSON document: ${err.message}`);
}
if (request.scale !== undefined) fatal('"scale" is gone: time is virtual now, a run takes no real time per simulated second');
const world = {
  epoch: '2026-11-25T09:00:00.000Z',
  crawl_seconds: [90, 150],
  clean_seconds: [60, 120],
  merge_seconds: [15, 30],
  curated_files: 1,
  clean_per_upload_seconds: 0.5,
  ...(request.world ?? {}),
};
const maxSimulatedSeconds = request.max_simulated_seconds ?? 86400;
const handlerBusyMs = request.handler_busy_ms ?? 0;
const epochMs = Date.parse(world.epoch);
if (Number.isNaN(epochMs)) fatal(`world.epoch ${JSON.stringify(world.epoch)} is not a timestamp`);

// ----------------------------------------------------------------------------------------------------- seeded randomness
let seed = (request.seed ?? 1) >>> 0;
Math.random = function mulberry32() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// ---------------------------------------------------------------------------------------------------------- virtual clock
const real = {
  setImmediate: globalThis.setImmediate,
  performanceNow: performance.now.bind(performance),
  Date: globalThis.Date,
};

class VirtualClock {
  nowMs = 0; // simulated milliseconds since the world's epoch
  fired = 0;
  #seq = 0;
  #heap = []; // binary min-heap of timers by (due, seq); a cleared timer stays in it, marked, until it comes up

  schedule(fn, ms, args, repeat) {
    if (typeof fn !== 'function') throw new TypeError('The "callback" argument must be of type function');
    const delay = Number.isFinite(Number(ms)) && Number(ms) > 0 ? Number(ms) : 0;
    const timer = new VirtualTimer(this, fn, args, repeat ? delay : null);
    this.#arm(timer, delay);
    return timer;
  }

  #arm(timer, delay) {
    timer.due = this.nowMs + delay;
    timer.seq = this.#seq++;
    timer.cleared = false;
    this.#push(timer);
  }

  clear(timer) {
    if (timer instanceof VirtualTimer) timer.cleared = true;
  }

  // The earliest timer still armed, removed from the queue; null when none is.
  #next() {
    while (this.#heap.length) {
      const timer = this.#pop();
      if (!timer.cleared) return timer;
    }
    return null;
  }

  // Runs until `finished` settles: each round lets the event loop go idle, then fires the one earliest timer.
  async drive(finished, { maxMs }) {
    let done = false;
    finished.then(
      () => (done = true),
      () => (done = true),
    );
    const baseline = realResources();
    for (;;) {
      await settle(baseline);
      if (done) return;
      const timer = this.#next();
      if (!timer) {
        throw new Error(`deadlock at ${this.nowMs / 1000} simulated s: executions are still running and no timer is armed`);
      }
      if (timer.due > maxMs) {
        throw new Error(
          `the next timer is due at ${timer.due / 1000} simulated s, past max_simulated_seconds (${maxMs / 1000}): ` +
            'an execution is stuck (raise max_simulated_seconds if the definition waits that long)',
        );
      }
      this.nowMs = timer.due;
      this.fired += 1;
      if (timer.repeat !== null) this.#arm(timer, timer.repeat);
      else timer.cleared = true;
      timer.fn(...timer.args);
    }
  }

  #less(a, b) {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  #push(timer) {
    const heap = this.#heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#less(heap[i], heap[parent])) break;
      [heap[i], heap[parent]] = [heap[parent], heap[i]];
      i = parent;
    }
  }

  #pop() {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let least = i;
        if (left < heap.length && this.#less(heap[left], heap[least])) least = left;
        if (right < heap.length && this.#less(heap[right], heap[least])) least = right;
        if (least === i) break;
        [heap[i], heap[least]] = [heap[least], heap[i]];
        i = least;
      }
    }
    return top;
  }
}

// What setTimeout returns: enough of Node's Timeout for code that refs, unrefs, refreshes or clears it.
class VirtualTimer {
  constructor(clock, fn, args, repeat) {
    this.clock = clock;
    this.fn = fn;
    this.args = args;
    this.repeat = repeat;
  }
  ref() {
    return this;
  }
  unref() {
    return this;
  }
  hasRef() {
    return true;
  }
  refresh() {
    return this;
  }
  close() {
    this.clock.clear(this);
    return this;
  }
  [Symbol.dispose]() {
    this.clock.clear(this);
  }
}

// Real handles and requests the process holds (timers, sockets, file system requests, ...), by type, except immediates.
function realResources() {
  const counts = new Map();
  for (const type of process.getActiveResourcesInfo()) {
    if (type !== 'Immediate') counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

function realWorkPending(baseline) {
  for (const [type, n] of realResources()) if (n > (baseline.get(type) ?? 0)) return true;
  return false;
}

// Resolves once the event loop is idle: a setImmediate callback runs only after every promise callback queued before it
// (and those they queue) has run; while a real timer or I/O request someone started is outstanding, keep turning.
async function settle(baseline) {
  do {
    await new Promise((resolve) => real.setImmediate(resolve));
  } while (realWorkPending(baseline));
}

const clock = new VirtualClock();
globalThis.setTimeout = (fn, ms, ...args) => clock.schedule(fn, ms, args, false);
globalThis.setInterval = (fn, ms, ...args) => clock.schedule(fn, ms, args, true);
globalThis.clearTimeout = (timer) => clock.clear(timer);
globalThis.clearInterval = (timer) => clock.clear(timer);
const virtualEpochMs = () => epochMs + clock.nowMs;
globalThis.Date = new Proxy(real.Date, {
  construct: (target, args, newTarget) => Reflect.construct(target, args.length ? args : [virtualEpochMs()], newTarget),
  apply: () => new real.Date(virtualEpochMs()).toString(),
  get: (target, property, receiver) => (property === 'now' ? virtualEpochMs : Reflect.get(target, property, receiver)),
});
performance.now = () => clock.nowMs;

const now = () => clock.nowMs / 1000; // simulated seconds since the epoch
const iso = (seconds) => new Date(epochMs + seconds * 1000).toISOString();
const uniform = ([low, high]) => low + Math.random() * (high - low);
const sleep = (seconds) => new Promise((resolve) => globalThis.setTimeout(resolve, seconds * 1000));

const { StateMachine, ExecutionError, ExecutionAbortedError, ExecutionTimeoutError } = await import('aws-local-stepfunctions');

// ------------------------------------------------------------------------------------------------------------- the world
const crawls = []; // {start, end}
let crawlerRunningErrors = 0;
const queries = new Map(); // id -> {start, end, state, reason, commit}
let commits = [];
let conflicts = 0;
const notifications = [];
const locks = new Map(); // lock item (object) -> {owner, leaseEnd}
const lockWaits = new Map(); // owner (execution ARN) -> {first, taken}
let lockRefusals = 0;
let maxConcurrentMerges = 0;

function awsError(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

const runningCrawl = (t) => crawls.find((c) => c.start <= t && t < c.end);

function settleQueries(t) {
  // In the order MERGEs end: each commits unless another committed after it started.
  const due = [...queries.values()].filter((q) => q.state === 'RUNNING' && q.end <= t).sort((a, b) => a.end - b.end);
  for (const q of due) {
    if (commits.some((c) => c > q.start && c <= q.end)) {
      q.state = 'FAILED';
      q.reason = `ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table: ${q.id} conflicts with a concurrent commit`;
      conflicts += 1;
    } else {
      q.state = 'SUCCEEDED';
      commits.push(q.end);
    }
  }
}

function startQuery() {
  const t = now();
  const id = `q-${queries.size + 1}`;
  const query = { id, start: t, end: t + uniform(world.merge_seconds), state: 'RUNNING', reason: null };
  queries.set(id, query);
  const running = [...queries.values()].filter((q) => q.state !== 'CANCELLED' && q.start <= t && t < q.end).length;
  maxConcurrentMerges = Math.max(maxConcurrentMerges, running);
  return query;
}

// The schema check function (runtime/crawl_check.py): every burst upload is new to the raw table, so each run crawls
// (shares a crawl) as before the check existed; world.schema_unchanged answers "schema unchanged" instead (no crawl).
function checkSchema() {
  const crawl = !world.schema_unchanged;
  return { Payload: { crawl, reason: crawl ? 'no raw table yet' : 'schema unchanged' }, StatusCode: 200 };
}

function invokeLambda(input) {
  const action = input?.Payload?.action;
  if (action !== undefined) return { Payload: scheduledRuns(input.Payload), StatusCode: 200 };
  return input && input.Payload && input.Payload.columns !== undefined ? checkSchema() : takeLoadLock(input);
}

function takeLoadLock({ Payload: event }) {
  if (!event || event.lease_seconds === undefined) throw new Error(`lambda:invoke of an unknown function: ${JSON.stringify(event)}`);
  const t = now();
  const lockKey = event.Key.object.S;
  const wait = lockWaits.get(event.owner) ?? { first: t, taken: null };
  lockWaits.set(event.owner, wait);
  const held = locks.get(lockKey);
  if (held && held.owner !== event.owner && held.leaseEnd >= t) {
    lockRefusals += 1;
    throw awsError('LoadLockHeld', JSON.stringify({ errorType: 'LoadLockHeld', errorMessage: `the load lock is held by ${held.owner}` }));
  }
  locks.set(lockKey, { owner: event.owner, leaseEnd: t + event.lease_seconds });
  if (wait.taken === null) wait.taken = t;
  return { Payload: { owner: event.owner, taken_at: iso(t), lease_expires_at: iso(t + event.lease_seconds) }, StatusCode: 200 };
}

function releaseLoadLock(input) {
  const lockKey = input.Key.object.S;
  const held = locks.get(lockKey);
  if (!held || held.owner !== input.ExpressionAttributeValues[':owner'].S) {
    throw awsError('DynamoDB.ConditionalCheckFailedException', 'The conditional request failed');
  }
  locks.delete(lockKey);
  return {};
}

function queryExecution(query) {
  const status = { State: query.state, SubmissionDateTime: iso(query.start) };
  if (query.reason) status.StateChangeReason = query.reason;
  return { QueryExecution: { QueryExecutionId: query.id, Status: status } };
}

const handlers = {
  'glue:startCrawler': () => {
    const t = now();
    if (runningCrawl(t)) {
      crawlerRunningErrors += 1;
      throw awsError('Glue.CrawlerRunningException', 'Crawler with name raw has already started');
    }
    crawls.push({ start: t, end: t + uniform(world.crawl_seconds) });
    return {};
  },
  'glue:getCrawler': () => {
    const t = now();
    const finished = crawls.filter((c) => c.end <= t);
    const last = finished.length ? finished[finished.length - 1].start : -86400;
    return {
      Crawler: {
        Name: 'raw',
        State: runningCrawl(t) ? 'RUNNING' : 'READY',
        LastCrawl: { Status: 'SUCCEEDED', StartTime: iso(last), LogGroup: '/aws-glue/crawlers' },
      },
    };
  },
  'glue:startJobRun': async (input) => {
    const files = JSON.parse(input.Arguments['--source_uris']).length;
    cleanRuns.push(files);
    await sleep(uniform(world.clean_seconds) + world.clean_per_upload_seconds * files);
    return { Id: 'jr_1', JobName: 'clean', JobRunState: 'SUCCEEDED' };
  },
  'athena:startQueryExecution.sync': async () => {
    const query = startQuery();
    await sleep(query.end - query.start);
    settleQueries(Math.max(now(), query.end));
    if (query.state === 'FAILED') throw awsError('States.TaskFailed', JSON.stringify(queryExecution(query)));
    return queryExecution(query);
  },
  'athena:startQueryExecution': () => ({ QueryExecutionId: startQuery().id }),
  'athena:getQueryExecution': (input) => {
    settleQueries(now());
    const query = queries.get(input.QueryExecutionId);
    if (!query) throw awsError('Athena.InvalidRequestException', `QueryExecution ${input.QueryExecutionId} was not found`);
    return queryExecution(query);
  },
  'athena:stopQueryExecution': (input) => {
    const query = queries.get(input.QueryExecutionId);
    if (query && query.state === 'RUNNING') query.state = 'CANCELLED';
    return {};
  },
  's3:listObjectsV2': (input) => ({ KeyCount: Math.min(world.curated_files, input.MaxKeys ?? 1000), Name: input.Bucket }),
  // The ledger: every upload of the burst is its own object, so no write is refused; counts say nothing was quarantined.
  'dynamodb:updateItem': () => ({}),
  'dynamodb:getItem': () => ({ Item: { rows_quarantined: { N: '0' } } }),
  'dynamodb:deleteItem': releaseLoadLock,
  'lambda:invoke': invokeLambda,
  'sns:publish': (input) => {
    notifications.push(input);
    return { MessageId: `m-${notifications.length}` };
  },
};

function apiOf(resource) {
  const match = /:states:::(?:aws-sdk:)?([a-z0-9-]+):([A-Za-z0-9]+)(\.sync)?/.exec(resource ?? '');
  if (!match) return null;
  const key = `${match[1]}:${match[2]}`;
  if (match[3] && handlers[`${key}.sync`]) return `${key}.sync`;
  return key;
}

// -------------------------------------------------------------------------------------------------------------- running
const definition = request.definition;
const taskStates = {};
(function collect(machine) {
  for (const [name, state] of Object.entries(machine.States ?? {})) {
    if (state.Type === 'Task') {
      taskStates[name] = state;
      // AWS's default task timeout is 99999999 s (the interpreter's is 60 s, ASL's spec value): a .sync Glue job run that
      // sets only its job Timeout would otherwise time out after a simulated minute.
      if (state.TimeoutSeconds === undefined && state.TimeoutSecondsPath === undefined) state.TimeoutSeconds = 99999999;
    }
    for (const branch of state.Branches ?? []) collect(branch);
    if (state.ItemProcessor) collect(state.ItemProcessor);
  }
})(definition);
const taskResourceLocalHandlers = {};
for (const [name, state] of Object.entries(taskStates)) {
  const api = apiOf(state.Resource);
  if (!api || !handlers[api]) fatal(`Task state ${JSON.stringify(name)} calls ${state.Resource}, which this world does not answer`);
  taskResourceLocalHandlers[name] = traced(name, api, handlers[api]);
}

// Every call, in order, with its simulated time and input: the run's digest (`trace`) is equal for two runs only if they
// called the same APIs with the same inputs at the same simulated instants.
const trace = createHash('sha256');
let calls = 0;
function traced(stateName, api, handler) {
  return (input) => {
    calls += 1;
    trace.update(`${clock.nowMs} ${stateName} ${api} ${JSON.stringify(input)}\n`);
    if (handlerBusyMs > 0) {
      const until = real.performanceNow() + handlerBusyMs;
      while (real.performanceNow() < until); // a slow machine: real time passes, simulated time does not
    }
    return handler(input);
  };
}

// The last state each execution entered, Parallel branches included: a synchronous hook on every execution's event
// logger (a branch runs with its execution's run options, so its context names the execution); a branch's events are
// forwarded to the root logger later as the same objects, and counted once.
const lastEntered = new Map();
const seenEvents = new WeakSet();
const originalExecute = StateMachine.prototype.execute;
if (typeof originalExecute !== 'function') fatal('aws-local-stepfunctions internals changed (no StateMachine.prototype.execute)');
StateMachine.prototype.execute = function hookedExecute(runInput, options, cleanupFn) {
  const name = options?.runOptions?.context?.Execution?.Name;
  const logger = options?.eventLogger;
  if (name && logger && typeof logger.dispatch === 'function') {
    const dispatch = logger.dispatch.bind(logger);
    logger.dispatch = (event) => {
      if (event && typeof event === 'object' && !seenEvents.has(event)) {
        seenEvents.add(event);
        if (event.type === 'StateEntered') lastEntered.set(name, event.state.name);
      }
      dispatch(event);
    };
  }
  return originalExecute.call(this, runInput, options, cleanupFn);
};

let machine;
try {
  machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
} catch (err) {
  fatal(err.message);
}

// ------------------------------------------------------------------------------------------------- the ledger, scheduled
const cleanRuns = []; // uploads per clean job run
const ledger = new Map(); // upload uri -> {name, version, arrived_at, state, owner, loaded_at, run}
for (const { name, at } of request.uploads ?? []) {
  const uri = `s3://landing-bucket/incoming/step_functions/${name}`;
  ledger.set(uri, { name, uri, version: `v-${name}`, arrived_at: at, state: 'received', owner: null, loaded_at: null, run: null });
}
const runLocks = new Map(); // lock_object -> {owner (execution ARN), leaseEnd}
const claims = new Map(); // run id -> uploads its claim took
const heldBy = (runId) => [...ledger.values()].filter((u) => u.state === 'running' && u.owner === runId);

function scheduledRuns(event) {
  const t = now();
  if (event.action === 'claim') {
    const held = runLocks.get(event.lock_object);
    if (held && held.owner !== event.execution && held.leaseEnd >= t) {
      return { held: true, count: 0, message: `another run is going (${held.owner} holds the run lock)` };
    }
    runLocks.set(event.lock_object, { owner: event.execution, leaseEnd: t + Number(event.lease_seconds) });
    const taken = [...ledger.values()].filter(
      (u) => u.arrived_at <= t && (u.state === 'received' || u.state === 'failed' || (u.state === 'running' && u.owner === event.run_id)),
    );
    if (!taken.length) {
      runLocks.delete(event.lock_object);
      return { held: false, count: 0, message: 'nothing pending' };
    }
    for (const u of taken) Object.assign(u, { state: 'running', owner: event.run_id, run: event.run_id });
    claims.set(event.run_id, taken.length);
    return {
      held: false,
      count: taken.length,
      message: `took ${taken.length} pending uploads`,
      source_uris: JSON.stringify(taken.map((u) => u.uri)),
      source_versions: JSON.stringify(taken.map((u) => u.version)),
    };
  }
  if (event.action === 'load') return { loading: heldBy(event.run_id).length };
  if (event.action === 'finish') {
    const outcomes = {};
    for (const u of heldBy(event.run_id)) {
      if (event.loaded) Object.assign(u, { state: 'loaded', owner: null, loaded_at: t });
      outcomes[u.state] = (outcomes[u.state] ?? 0) + 1;
    }
    const lock = runLocks.get(event.lock_object);
    if (lock && lock.owner === event.execution) runLocks.delete(event.lock_object);
    return { outcomes, message: Object.entries(outcomes).map(([s, n]) => `${n} ${s}`).join(', ') };
  }
  throw new Error(`scheduled runs function: action ${JSON.stringify(event.action)} is not simulated`);
}

// The failure reporter's work for a run that ended badly: its uploads failed (the next firing retakes them), locks freed.
function reportFailure(runId, arn) {
  for (const u of heldBy(runId)) Object.assign(u, { state: 'failed', owner: null });
  for (const store of [runLocks, locks]) for (const [key, lock] of store) if (lock.owner === arn) store.delete(key);
}

// -------------------------------------------------------------------------------------------------------------- running
const running = new Set();
const outcomes = [];
async function runOne(name) {
  running.add(name);
  const startedAt = now();
  const outcome = { name, started_at: startedAt, ended_at: null, status: null, error: null, cause: null, failed_step: null, claimed: 0, ending: null };
  const arn = `arn:aws:states:eu-west-1:123456789012:execution:pipeline:${name}`;
  try {
    const execution = machine.run({ requested: [] }, {
      overrides: { taskResourceLocalHandlers },
      context: {
        Execution: { Name: name, Id: arn },
        StateMachine: { Name: 'pipeline', Id: 'arn:aws:states:eu-west-1:123456789012:stateMachine:pipeline' },
        State: { EnteredTime: iso(now()) },
      },
    });
    await execution.result;
    outcome.status = 'SUCCEEDED';
  } catch (err) {
    if (err instanceof ExecutionError) {
      outcome.status = 'FAILED';
      outcome.error = err.cause?.name ?? null;
      outcome.cause = typeof err.cause?.message === 'string' ? err.cause.message : null;
    } else if (err instanceof ExecutionTimeoutError) {
      outcome.status = 'TIMED_OUT';
    } else if (err instanceof ExecutionAbortedError) {
      outcome.status = 'ABORTED';
    } else {
      fatal(`unexpected error in ${name}: ${err?.stack ?? err}`);
    }
    outcome.failed_step = lastEntered.get(name) ?? null;
    reportFailure(name, arn);
  }
  outcome.claimed = claims.get(name) ?? 0;
  outcome.ending = lastEntered.get(name) ?? null;
  outcome.ended_at = Math.round(now() * 1000) / 1000;
  running.delete(name);
  outcomes.push(outcome);
}

// The schedule: a firing every `interval` s from `first_firing`, until every upload is loaded.
const maxFirings = request.max_firings ?? 1000;
async function fire() {
  const runs = [];
  await sleep(request.first_firing ?? 0);
  for (let k = 1; ; k += 1) {
    if (k > maxFirings) fatal(`${maxFirings} firings and still uploads not loaded`);
    runs.push(runOne(`sched-${String(k).padStart(3, '0')}`));
    await sleep(request.interval);
    if ([...ledger.values()].every((u) => u.state === 'loaded')) break;
  }
  await Promise.all(runs);
}

const finished = fire();
try {
  await clock.drive(finished, { maxMs: maxSimulatedSeconds * 1000 });
} catch (err) {
  fatal(`${err.message} (still running: ${[...running].join(', ') || 'none'})`);
}
await finished;
outcomes.sort((a, b) => a.started_at - b.started_at);
const uploads = [...ledger.values()].map(({ name, arrived_at, loaded_at, run, state }) => ({ name, arrived_at, loaded_at, run, state }));
for (const outcome of outcomes) trace.update(`${JSON.stringify(outcome)}\n`);
for (const upload of uploads) trace.update(`${JSON.stringify(upload)}\n`);
const report = {
  crawls_started: crawls.length,
  crawler_running_errors: crawlerRunningErrors,
  merges_started: queries.size,
  loads_committed: commits.length,
  load_conflicts: conflicts,
  max_concurrent_merges: maxConcurrentMerges,
  lock_refusals: lockRefusals,
  clean_runs: cleanRuns,
  simulated_seconds: Math.round(now()),
  timers_fired: clock.fired,
  calls,
  trace: trace.digest('hex'),
  executions: outcomes,
  uploads,
};
process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
