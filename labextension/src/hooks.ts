/** React glue for Lumino signals: re-render a component whenever a signal fires. */
import { ISignal } from '@lumino/signaling';
import * as React from 'react';

/** A number that changes each time `signal` fires (use it as a render dependency). */
export function useSignalCount(signal: ISignal<unknown, unknown> | null): number {
  const [count, setCount] = React.useState(0);
  React.useEffect(() => {
    if (!signal) {
      return;
    }
    const bump = () => setCount(n => n + 1);
    signal.connect(bump);
    return () => {
      signal.disconnect(bump);
    };
  }, [signal]);
  return count;
}
