// Runs a real (synthesized) Amazon States Language definition in aws-local-stepfunctions 3.0.0, asking the caller to
// answer each Task as it runs (the `make demo FORM=step_functions` driver, scripts/asl_live.py).
//
// Protocol, one JSON document per line:
//   stdin, first line:  {"definition": {...}, "input": ..., "context": {...}?}
//   stdout:             {"type": "event", "event": "StateEntered|StateExited|StateFailed|StateRetried|StateCaught",
//                        "state": <name>, "state_type": <Type>, "at": <epoch ms>}
//                       {"type": "task", "id": <n>, "state": <name>, "input": <after InputPath + Parameters>}
//   stdin, per task:    {"id": <n>, "result": <JSON>} or {"id": <n>, "error": "<ErrorName>", "cause": "<string>"}
//   stdout, last line:  {"type": "end", "status", "output", "error", "cause", "states_entered": [...], "calls": [...]}
//
// Unlike tests/asl/run_state_machine.mjs (outcomes scripted before the run), each Task's answer is computed while the
// execution waits for it, from the input the interpreter resolved: the real work runs at the step that asks for it.
// Wait states take 0 ms and retries pause 0 ms (MaxAttempts is still honoured), as in the tests' runner.
import { statesOf, statesOfType as statesOfTypeIn } from '../tests/asl/definition_states.mjs';
import { createInterface } from 'node:readline';

let lib;
try {
  lib = await import('aws-local-stepfunctions');
} catch (err) {
  fatal(`cannot import aws-local-stepfunctions from ${process.cwd()}/node_modules (run \`make setup\`): ${err.message}`);
}
const { StateMachine, ExecutionError, ExecutionAbortedError, ExecutionTimeoutError } = lib;

function fatal(message) {
  process.stderr.write(`asl_live.mjs: ${message}\n`);
  process.exit(2);
}

const clone = (value) => (value === undefined ? null : JSON.parse(JSON.stringify(value)));
const send = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

// ------------------------------------------------------------------------------------------------------- stdin lines
const waiting = new Map();
let resolveRequest;
const requestLine = new Promise((resolve) => {
  resolveRequest = resolve;
});
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (resolveRequest) {
    const resolve = resolveRequest;
    resolveRequest = null;
    resolve(line);
    return;
  }
  const reply = JSON.parse(line);
  const answer = waiting.get(reply.id);
  if (!answer) fatal(`a reply for no pending task: ${line.slice(0, 200)}`);
  waiting.delete(reply.id);
  answer(reply);
});

let request;
try {
  request = JSON.parse(await requestLine);
} catch (err) {
  fatal(`the first line is not one JSON document: ${err.message}`);
}
const definition = request.definition;
if (!definition || typeof definition !== 'object' || !definition.States || !definition.StartAt) {
  fatal('request.definition must be an ASL object with StartAt and States');
}

const allStates = statesOf(definition);
const statesOfType = (type) => statesOfTypeIn(allStates, type);

// ------------------------------------------------------------------------------- synchronous event hook (3.0.0 internals)
const statesEntered = [];
const seen = new WeakSet();
const originalExecute = StateMachine.prototype.execute;
if (typeof originalExecute !== 'function') fatal('aws-local-stepfunctions internals changed (no StateMachine.prototype.execute)');
StateMachine.prototype.execute = function hookedExecute(runInput, options, cleanupFn) {
  const logger = options?.eventLogger;
  if (!logger || typeof logger.dispatch !== 'function') fatal('aws-local-stepfunctions internals changed (no eventLogger.dispatch)');
  const dispatch = logger.dispatch.bind(logger);
  logger.dispatch = (event) => {
    if (event && typeof event === 'object' && !seen.has(event) && event.state) {
      seen.add(event);
      if (event.type === 'StateEntered') statesEntered.push(event.state.name);
      send({ type: 'event', event: event.type, state: event.state.name, state_type: event.state.type, at: Date.now() });
    }
    dispatch(event);
  };
  return originalExecute.call(this, runInput, options, cleanupFn);
};

// --------------------------------------------------------------------------------------------------------- handlers
const calls = [];
let nextId = 0;
function makeHandler(name) {
  return async (taskInput) => {
    const id = ++nextId;
    calls.push({ state: name, input: clone(taskInput), call: id });
    const reply = await new Promise((resolve) => {
      waiting.set(id, resolve);
      send({ type: 'task', id, state: name, input: clone(taskInput) });
    });
    if ('error' in reply) {
      const error = new Error(reply.cause === undefined || reply.cause === null ? '' : String(reply.cause));
      error.name = reply.error;
      throw error;
    }
    return clone(reply.result);
  };
}
const taskResourceLocalHandlers = Object.fromEntries(statesOfType('Task').map((name) => [name, makeHandler(name)]));
const waitTimeOverrides = Object.fromEntries(statesOfType('Wait').map((name) => [name, 0]));
const retryIntervalOverrides = Object.fromEntries(
  [...allStates].filter(([, s]) => Array.isArray(s.Retry) && s.Retry.length).map(([name]) => [name, 0]),
);

function executionContext(given) {
  const name = given.Execution?.Name ?? 'local-execution';
  const machine = given.StateMachine?.Name ?? 'local-state-machine';
  return {
    ...given,
    Execution: { Id: `arn:aws:states:eu-west-1:123456789012:execution:${machine}:${name}`, Name: name, ...given.Execution },
    StateMachine: { Id: `arn:aws:states:eu-west-1:123456789012:stateMachine:${machine}`, Name: machine, ...given.StateMachine },
    State: { EnteredTime: new Date().toISOString(), ...given.State },
  };
}

// -------------------------------------------------------------------------------------------------------------- run
let machine;
try {
  machine = new StateMachine(definition, { validationOptions: { checkArn: false } });
} catch (err) {
  fatal(err.message);
}
const report = { type: 'end', status: null, output: null, error: null, cause: null, states_entered: statesEntered, calls };
try {
  const execution = machine.run(request.input ?? {}, {
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
  } else if (err instanceof ExecutionTimeoutError) {
    report.status = 'TIMED_OUT';
    report.error = 'States.Timeout';
  } else if (err instanceof ExecutionAbortedError) {
    report.status = 'ABORTED';
  } else {
    fatal(`unexpected error while running the state machine: ${err?.stack ?? err}`);
  }
}
process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
