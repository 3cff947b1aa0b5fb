// The states of an ASL definition, for the two local runners (tests/asl/run_state_machine.mjs, scripts/asl_live.mjs).
//
// statesOf(definition): every state by name, Parallel branches and Map processors included (the first of a name wins),
// with `"ResultPath": "$"` normalized away: aws-local-stepfunctions 3.0.0 treats it as a field literally named "$"
// ({"...input", "$": result}), while in AWS it means "replace the input with the result", like an absent ResultPath.
export function statesOf(definition) {
  const allStates = new Map();
  (function collect(machine) {
    for (const [name, state] of Object.entries(machine.States ?? {})) {
      if (!allStates.has(name)) allStates.set(name, state);
      for (const branch of state.Branches ?? []) collect(branch);
      if (state.ItemProcessor) collect(state.ItemProcessor);
      if (state.Iterator) collect(state.Iterator);
    }
  })(definition);
  for (const state of allStates.values()) {
    if (state.ResultPath === '$') delete state.ResultPath;
    for (const catcher of state.Catch ?? []) if (catcher.ResultPath === '$') delete catcher.ResultPath;
  }
  return allStates;
}

// The names of the states of one Type.
export const statesOfType = (allStates, type) => [...allStates].filter(([, s]) => s.Type === type).map(([n]) => n);
