// Passwords kept out of what Capra prints: a connection URL's password
// (in its userinfo or a password= parameter) shown as ***.

/** A connection URL with its password (in the userinfo or a password= parameter) shown as ***. */
export function maskPassword(url: string): string {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/s.exec(url);
  if (!m) return url;
  let [, scheme, authority, rest] = m as unknown as [string, string, string, string];
  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    if (colon >= 0) authority = `${userinfo.slice(0, colon)}:***${authority.slice(at)}`;
  }
  rest = rest.replace(/([?&]password=)[^&#]*/gi, '$1***');
  return scheme + authority + rest;
}

/** Every URL with a password inside a free text (an error message) masked. */
export function maskPasswords(text: string): string {
  return text.replace(/[A-Za-z][A-Za-z0-9+.-]*:\/\/[^\s"',]*/g, (url) => maskPassword(url));
}
