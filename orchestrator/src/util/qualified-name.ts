// A dotted SQL name as the config and the CLI write it, split into its parts.
// Here rather than in db/ so that config/ can check names without a database
// module (no import cycle between folders).

/**
 * `a.b` -> [a, b]; a part that contains a dot or a double quote is written in
 * double quotes, as in SQL: `"My Schema"."odd ""name"""`. Names are exact (no
 * case folding). Throws, naming the text, on an empty part or a stray quote.
 */
export function splitQualified(ref: string): string[] {
  const parts: string[] = [];
  let i = 0;
  while (i <= ref.length) {
    let part = '';
    if (ref[i] === '"') {
      i++;
      for (;;) {
        if (i >= ref.length) throw new Error(`unterminated quote in ${JSON.stringify(ref)}`);
        if (ref[i] === '"') {
          if (ref[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += ref[i++];
      }
      if (i < ref.length && ref[i] !== '.') throw new Error(`unexpected text after a quoted name in ${JSON.stringify(ref)}`);
    } else {
      const dot = ref.indexOf('.', i);
      const end = dot === -1 ? ref.length : dot;
      part = ref.slice(i, end);
      if (part.includes('"')) throw new Error(`stray double quote in ${JSON.stringify(ref)}`);
      i = end;
    }
    if (part === '') throw new Error(`empty name in ${JSON.stringify(ref)}`);
    parts.push(part);
    i++; // skip the dot
  }
  return parts;
}
