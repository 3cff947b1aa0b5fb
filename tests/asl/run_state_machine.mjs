// Runs a real (synthesized) Amazon States Language definition in aws-local-stepfunctions 3.0.0 with scripted Task outcomes.
//
// stdin:  {"definition": {...}, "input": ..., "context": {...}?, "scripts": {"<Task state>": [<outcome>, ...]},
//          "waitTimeOverrides": {"<Wait state>": ms}?, "validationOptions": {...}?}
//         outcome = {"result": <JSON>} | {"error": "<ErrorName>", "cause": "<string>"}
// stdout: {"status", "output", "error", "cause", "calls": [{"state", "input", "attempt", "call"}], "states_entered": [...],
//          "harness_error": <string or null>}
//
// Exit code 0 whenever the execution ran (whatever its status); 2 with a message on stderr when the harness itself could not
// run it (bad stdin, invalid definition, unknown state names in scripts, missing package).
//
// Semantics (see tests/asl_runner.py for the Python side):
// - The n-th call of a Task state (counted over the whole execution, every entry and retry, Map iterations included) gets the
//   n-th outcome; the last one repeats. An error outcome is thrown as an Error whose name is the error and whose message is the
//   cause, which is exactly what Retry/Catch match on and what a Catch writes as {"Error", "Cause"} at its ResultPath.
//   {"error": "States.Timeout"} throws the library's own timeout error, so States.TaskFailed does not match it (as in AWS).
// - A Task state without a script throws an error that no Retry or Catch can handle, so the execution FAILS with
//   error "Harness.MissingScript" and harness_error set; the Python helper raises on it.
// - Every Wait state waits 0 ms unless waitTimeOverrides says otherwise; every Retry pauses 0 ms (retryIntervalOverrides), so
//   IntervalSeconds/BackoffRate/MaxDelaySeconds/JitterStrategy never sleep and MaxAttempts is still honoured.
// - "calls[].input" is what the local handler received: the state input after InputPath and Parameters (intrinsics resolved).
// - "states_entered" and "calls[].attempt" come from a synchronous hook on each execution's event logger (root execution, every
//   Map iteration and every Parallel branch), so they are in true order; the library's public eventLogs forwards nested
//   events asynchronously and may reorder them.
import { statesOf, statesOfType as statesOfTypeIn } from './definition_states.mjs';
import { readFileSync } from 'node:fs';

let lib;
try {
  lib = await import('aws-local-stepfunctions');
} catch (err) {
  fatal(`cannot import aws-local-stepfunctions from ${process.cwd()}/node_modules (run \`make setup\`): ${err.message}`);
}
const { StateMachine, ExecutionError, ExecutionAbortedError, ExecutionTimeoutError } = lib;

function fatal(message) {
  process.stderr.write(`run_state_machine.mjs: ${message}\n`);
  process.exit(2);
}

const clone = (value) => (value === undefined ? null : JSON.parse(JSON.stringify(value)));

// ---------------------------------------------------------------------------------------------------------------- request
let request;
try {
  request = JSON.parse(readFileSync(0, 'utf8'));
} catch (err) {
  fatal(`stdin is not one JSON document: ${err.message}`);
}
const definition = request.definition;
if (!definition || typeof definition !== 'object' || !definition.States || !definition.StartAt) {
  fatal('request.definition must be an ASL object with StartAt and States');
}
if (definition.QueryLanguage === 'JSONata') {
  fatal('JSONata state machines are not supported by aws-local-stepfunctions 3.0.0 JSONPath semantics used here');
}
const scripts = request.scripts ?? {};
const input = request.input === undefined ? {} : request.input;

// Every state of the machine, nested Parallel branches and Map processors included.
const allStates = statesOf(definition);
const statesOfType = (type) => statesOfTypeIn(allStates, type);
const taskStates = statesOfType('Task');
const waitStates = statesOfType('Wait');

const unknownScripts = Object.keys(scripts).filter((name) => !taskStates.includes(name));
if (unknownScripts.length) {
  fatal(`scripts name no Task state of the definition: ${JSON.stringify(unknownScripts)}; Task states: ${JSON.stringify(taskStates)}`);
}
for (const [name, outcomes] of Object.entries(scripts)) {
  if (!Array.isArray(outcomes) || outcomes.length === 0) fatal(`scripts[${JSON.stringify(name)}] must be a non-empty list of outcomes`);
  for (const outcome of outcomes) {
    const ok = outcome && typeof outcome === 'object' && (('result' in outcome) !== ('error' in outcome));
    if (!ok) fatal(`scripts[${JSON.stringify(name)}]: each outcome is {"result": ...} or {"error": "...", "cause": "..."}, got ${JSON.stringify(outcome)}`);
    if ('error' in outcome && typeof outcome.error !== 'string') fatal(`scripts[${JSON.stringify(name)}]: "error" must be a string`);
  }
}
const waitOverrides = request.waitTimeOverrides ?? {};
const unknownWaits = Object.keys(waitOverrides).filter((name) => !waitStates.includes(name));
if (unknownWaits.length) {
  fatal(`waitTimeOverrides name no Wait state of the definition: ${JSON.stringify(unknownWaits)}; Wait states: ${JSON.stringify(waitStates)}`);
}

// ------------------------------------------------------------------------------------- synchronous event hook (3.0.0 internals)
// StateMachine.prototype.execute(input, options, cleanupFn) is private in the typings; options.eventLogger.dispatch(event) is
// called synchronously right before a state runs (StateEntered) and before each retry (StateRetried), and the Task handler is
// then called in the same synchronous run, so `pending` always describes the call that follows.
const statesEntered = [];
const failedEvents = [];
let pending = null;
const seen = new WeakSet();
const originalExecute = StateMachine.prototype.execute;
if (typeof originalExecute !== 'function') {
  fatal('aws-local-stepfunctions internals changed (no StateMachine.prototype.execute); this runner targets version 3.0.0');
}
StateMachine.prototype.execute = function hookedExecute(runInput, options, cleanupFn) {
  const logger = options?.eventLogger;
  if (!logger || typeof logger.dispatch !== 'function') {
    throw new Error('aws-local-stepfunctions internals changed (no eventLogger.dispatch); this runner targets version 3.0.0');
  }
  const dispatch = logger.dispatch.bind(logger);
  const attempts = new Map(); // state name -> attempt number of its current entry, in this execution
  logger.dispatch = (event) => {
    // Events of Map iterations / Parallel branches are re-dispatched (same object) to the parent logger: count them once.
    if (event && typeof event === 'object' && !seen.has(event)) {
      seen.add(event);
      if (event.type === 'StateEntered') {
        statesEntered.push(event.state.name);
        attempts.set(event.state.name, 1);
        pending = { state: event.state.name, attempt: 1 };
      } else if (event.type === 'StateRetried') {
        // event.retry.attempt counts per retrier; count over all retriers of this entry instead.
        const attempt = (attempts.get(event.state.name) ?? 1) + 1;
        attempts.set(event.state.name, attempt);
        pending = { state: event.state.name, attempt };
      } else if (event.type === 'StateFailed') {
        failedEvents.push({ state: event.state.name, type: event.state.type });
      }
    }
    dispatch(event);
  };
  return originalExecute.call(this, runInput, options, cleanupFn);
};

// The library's States.Timeout error class is not exported; `error instanceof` it decides whether States.TaskFailed matches.
// Obtain it once from a throwaway 1 ms Task timeout, only if some script needs it.
async function timeoutErrorClass() {
  const probe = new StateMachine(
    { StartAt: 'T', States: { T: { Type: 'Task', Resource: 'arn:aws:lambda:eu-west-1:123456789012:function:probe', TimeoutSeconds: 0.001, End: true } } },
    { validationOptions: { noValidate: true } },
  );
  try {
    await probe.run({}, { overrides: { taskResourceLocalHandlers: { T: () => new Promise(() => {}) } } }).result;
  } catch (err) {
    if (err?.cause?.name === 'States.Timeout') return err.cause.constructor;
  }
  fatal('could not obtain the States.Timeout error class from aws-local-stepfunctions');
}
const needsTimeout = Object.values(scripts).some((outcomes) => outcomes.some((o) => o.error === 'States.Timeout'));
const StatesTimeoutError = needsTimeout ? await timeoutErrorClass() : null;
statesEntered.length = 0;
failedEvents.length = 0;
pending = null;

// ------------------------------------------------------------------------------------------------------------ handlers
const calls = [];
const callCount = {};
let harnessError = null;

class HarnessError extends Error {
  constructor(message) {
    super(message);
    this.name = 'Harness.MissingScript';
    // Read by the library's Retry/Catch matching: neither may swallow a harness failure.
    this.isRetryable = false;
    this.isCatchable = false;
  }
}

function makeHandler(name) {
  return (taskInput) => {
    const n = (callCount[name] = (callCount[name] ?? 0) + 1);
    const attempt = pending && pending.state === name ? pending.attempt : 1;
    pending = null;
    calls.push({ state: name, input: clone(taskInput), attempt, call: n });
    const outcomes = scripts[name];
    if (!outcomes) {
      harnessError = `Task state ${JSON.stringify(name)} ran but has no script; add scripts[${JSON.stringify(name)}] = [{"result": ...}] or [{"error": ..., "cause": ...}]`;
      throw new HarnessError(harnessError);
    }
    const outcome = outcomes[Math.min(n, outcomes.length) - 1];
    if ('error' in outcome) {
      const cause = outcome.cause === undefined || outcome.cause === null ? '' : String(outcome.cause);
      let error;
      if (outcome.error === 'States.Timeout') {
        error = new StatesTimeoutError();
        if (outcome.cause !== undefined) error.message = cause;
      } else {
        error = new Error(cause);
        error.name = outcome.error;
      }
      throw error;
    }
    return clone(outcome.result);
  };
}

const taskResourceLocalHandlers = Object.fromEntries(taskStates.map((name) => [name, makeHandler(name)]));
const waitTimeOverrides = { ...Object.fromEntries(waitStates.map((name) => [name, 0])), ...waitOverrides };
const retryIntervalOverrides = Object.fromEntries(
  [...allStates].filter(([, s]) => Array.isArray(s.Retry) && s.Retry.length).map(([name]) => [name, 0]),
);

// The Context Object: the given one over AWS-like defaults (Execution.Input and Execution.StartTime are always set by the
// interpreter), so `$$.Execution.Name` / `$$.Execution.Id` / `$$.StateMachine.Name` resolve even when a test gives none.
function executionContext(given) {
  const name = given.Execution?.Name ?? 'local-execution';
  const machine = given.StateMachine?.Name ?? 'local-state-machine';
  return {
    ...given,
    Execution: { Id: `arn:aws:states:eu-west-1:123456789012:execution:${machine}:${name}`, Name: name, ...given.Execution },
    StateMachine: { Id: `arn:aws:states:eu-west-1:123456789012:stateMachine:${machine}`, Name: machine, ...given.StateMachine },
    // The interpreter sets no $$.State: one EnteredTime for the whole execution stands in for each state's own.
    State: { EnteredTime: given.Execution?.StartTime ?? new Date().toISOString(), ...given.State },
  };
}

// ------------------------------------------------------------------------------------------------------------------ run
let machine;
try {
  machine = new StateMachine(definition, request.validationOptions ? { validationOptions: request.validationOptions } : undefined);
} catch (err) {
  fatal(err.message);
}

const report = { status: null, output: null, error: null, cause: null, calls, states_entered: statesEntered, harness_error: null };
try {
  const execution = machine.run(input, {
    overrides: { taskResourceLocalHandlers, waitTimeOverrides, retryIntervalOverrides },
    context: executionContext(request.context ?? {}),
  });
  report.output = clone(await execution.result);
  report.status = 'SUCCEEDED';
} catch (err) {
  if (err instanceof ExecutionError) {
    const cause = err.cause ?? {};
    report.status = 'FAILED';
    report.error = cause.name ?? null;
    report.cause = typeof cause.message === 'string' ? cause.message : null;
    // A Fail state without Error/Cause: the library reports "FailStateError" / a canned sentence; AWS reports none.
    const last = failedEvents[failedEvents.length - 1];
    if (last && last.type === 'Fail' && !(cause instanceof HarnessError)) {
      const fail = allStates.get(last.state) ?? {};
      if (fail.Error === undefined && fail.ErrorPath === undefined) report.error = null;
      if (fail.Cause === undefined && fail.CausePath === undefined) report.cause = null;
    }
  } else if (err instanceof ExecutionTimeoutError) {
    report.status = 'TIMED_OUT';
    report.error = 'States.Timeout';
  } else if (err instanceof ExecutionAbortedError) {
    report.status = 'ABORTED';
  } else {
    fatal(`unexpected error while running the state machine: ${err?.stack ?? err}`);
  }
}
report.harness_error = harnessError;
// Nothing should be pending, but a never-settling handler must not keep the process alive.
process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
