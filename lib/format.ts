// Number formatting shared by every command's tables.

/** `1234.5` -> `1234.5`, `0.000123` -> `0.000123`: enough digits to read, no exponent. */
export function fmt(x: number, digits = 3): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  const d = Math.max(0, digits - 1 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(d, 6));
}
