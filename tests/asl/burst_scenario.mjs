// A burst of uploads: many executions of one real (synthesized) ASL definition run together in aws-local-stepfunctions
// 3.0.0 against one shared, scripted AWS world on a simulated clock.
//
// stdin:  {"definition": {...}, "executions": [{"name", "input", "start_at": <simulated s>}], "scale": <simulated s per
//          real s>, "seed": <int>, "world": {"epoch", "crawl_seconds": [min, max], "clean_seconds": [min, max],
//          "merge_seconds": [min, max], "curated_files": <int>}}
// stdout: {"crawls_started", "crawler_running_errors", "loads_committed", "load_conflicts", "simulated_seconds",
//          "executions": [{"name", "status", "error", "cause", "failed_step"}], "notifications": [...]}
//
// The world (every Task state is answered by what its Resource calls, so any definition of the pipeline runs here):
// - glue:startCrawler throws Glue.CrawlerRunningException while a crawl runs; a crawl takes crawl_seconds (uniform).
// - glue:getCrawler gives State RUNNING or READY and LastCrawl of the last finished crawl (Status, StartTime as the ISO
//   8601 string Step Functions' SDK integrations return); before the burst the last crawl was the day before.
// - glue:startJobRun(.sync) takes clean_seconds and succeeds.
// - athena:startQueryExecution starts a MERGE that takes merge_seconds; it commits at its end unless another MERGE
//   committed after it started (Iceberg's optimistic concurrency): then it FAILS with ICEBERG_COMMIT_ERROR.
//   With `.sync` the task waits for the end and raises States.TaskFailed on failure; without it getQueryExecution
//   reports QUEUED/RUNNING/SUCCEEDED/FAILED and stopQueryExecution cancels.
// - s3:listObjectsV2 finds `curated_files` objects (KeyCount); sns:publish records the message.
//
// Simulated time: setTimeout is scaled by `scale` (Wait states, Retry intervals with their jitter and task timeouts all
// go through it in the interpreter), and Math.random is seeded, so Wait durations are the definition's own.
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
const scale = request.scale ?? 200;
const world = {
  epoch: '2026-11-25T09:00:00.000Z',
  crawl_seconds: [90, 150],
  clean_seconds: [60, 120],
  merge_seconds: [15, 30],
  curated_files: 1,
  ...(request.world ?? {}),
};

// ------------------------------------------------------------------------------------------ seeded randomness, scaled time
let seed = (request.seed ?? 1) >>> 0;
Math.random = function mulberry32() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const realSetTimeout = globalThis.setTimeout;
globalThis.setTimeout = (fn, ms, ...args) => realSetTimeout(fn, ms > 0 ? ms / scale : ms, ...args);
let started = performance.now(); // reset when the executions start
const epochMs = Date.parse(world.epoch);
const now = () => ((performance.now() - started) * scale) / 1000; // simulated seconds since the epoch
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
  return query;
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
  'glue:startJobRun': async () => {
    await sleep(uniform(world.clean_seconds));
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
  taskResourceLocalHandlers[name] = handlers[api];
}

let machine;
try {
  machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
} catch (err) {
  fatal(err.message);
}

async function runOne({ name, input, start_at: startAt = 0 }) {
  await sleep(startAt);
  const outcome = { name, status: null, error: null, cause: null, failed_step: null };
  try {
    const execution = machine.run(input, {
      overrides: { taskResourceLocalHandlers },
      context: {
        Execution: { Name: name, Id: `arn:aws:states:eu-west-1:123456789012:execution:pipeline:${name}` },
        StateMachine: { Name: 'pipeline', Id: 'arn:aws:states:eu-west-1:123456789012:stateMachine:pipeline' },
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
  }
  const mine = notifications.filter((n) => JSON.stringify(n.Message ?? '').includes(name));
  if (mine.length) {
    const message = typeof mine[0].Message === 'string' ? JSON.parse(mine[0].Message) : mine[0].Message;
    outcome.failed_step = message.failed_step ?? null;
    outcome.error = message.error ?? outcome.error;
  }
  return outcome;
}

started = performance.now();
const outcomes = await Promise.all((request.executions ?? []).map(runOne));
const report = {
  crawls_started: crawls.length,
  crawls: crawls.map((c) => [Math.round(c.start), Math.round(c.end)]),
  crawler_running_errors: crawlerRunningErrors,
  loads_committed: commits.length,
  load_conflicts: conflicts,
  simulated_seconds: Math.round(now()),
  executions: outcomes,
  notifications: notifications.length,
};
process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
