// Helpers for PromQL and Alertmanager/Prometheus Go templates, and checks of _config values.
// Every check fails rendering with the _config key and the problem.
local durationUnits = ['ms', 's', 'm', 'h', 'd', 'w', 'y'];
local digits = std.set(std.stringChars('0123456789'));
local all(xs) = std.foldl(function(a, b) a && b, xs, true);
// How many characters at the start of `s` are digits.
local leadingDigits(s, i=0) =
  if i < std.length(s) && std.member(digits, s[i]) then leadingDigits(s, i + 1) else i;
local plain = std.set(std.stringChars(
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._-'
));

{
  DAY:: 86400,

  // Whether `text` holds `part` (std.findSubstr is far too slow in jsonnet 0.18 for this).
  contains(text, part):: std.length(std.strReplace(text, part, '')) != std.length(text),
  severities:: ['critical', 'warning', 'info'],

  // A Prometheus duration: one or more <digits><unit> (5m, 1h30m, 500ms).
  isDuration(text)::
    local go(s) =
      if s == '' then true
      else
        local n = std.length(s);
        local digitCount = leadingDigits(s);
        if digitCount == 0 then false
        else
          local rest = std.substr(s, digitCount, n - digitCount);
          local unit = [u for u in durationUnits if std.startsWith(rest, u) &&
                                                    !(u == 'm' && std.startsWith(rest, 'ms'))];
          if unit == [] then false
          else go(std.substr(rest, std.length(unit[0]), std.length(rest) - std.length(unit[0])));
    std.isString(text) && text != '' && go(text),

  duration(key, value)::
    if self.isDuration(value) then value
    else error '_config.%s must be a Prometheus duration (5m, 1h), not %s' % [key, std.manifestJson(value)],

  // A threshold: a number >= 0.
  number(key, value)::
    if std.isNumber(value) && value >= 0 then value
    else error '_config.%s must be a number >= 0, not %s' % [key, std.manifestJson(value)],

  // Names that go into a regular expression unescaped: letters, digits, space, . _ -.
  names(key, value)::
    if !std.isArray(value) || value == [] then error '_config.%s must be a non-empty list' % key
    else [
      if std.isString(item) && item != '' && all([std.member(plain, c) for c in std.stringChars(item)])
      then item
      else error '_config.%s: %s must be a plain string (letters, digits, space, dot, dash, underscore)' % [key, std.manifestJson(item)]
      for item in value
    ],

  text(key, value)::
    if std.isString(value) && value != '' then value
    else error '_config.%s must be a non-empty string' % key,

  // Require lower < upper (both already numbers), naming the keys.
  ordered(lowerKey, lower, upperKey, upper, strict=true)::
    if (if strict then 0 < lower && lower < upper else lower < upper) then true
    else error '_config: need %s%s < %s (%s, %s)' % [if strict then '0 < ' else '', lowerKey, upperKey, lower, upper],

  // A threshold as PromQL writes it: 30 rather than 30.0, 0.9 rather than 0.90000000000000002.
  num(value)::
    if std.floor(value) == value then '%d' % value else '%g' % value,

  regexAlt(values):: std.join('|', values),

  // '5m' -> '5 minutes' for descriptions (compound durations are left as they are).
  spoken(duration)::
    local units = { s: 'second', m: 'minute', h: 'hour', d: 'day', w: 'week' };
    local n = std.length(duration);
    local count = std.substr(duration, 0, n - 1);
    local unit = duration[n - 1];
    if n >= 2 && std.objectHas(units, unit)
       && all([std.member(digits, c) for c in std.stringChars(count)])
    then
      local c = std.parseInt(count);
      '%d %s%s' % [c, units[unit], if c == 1 then '' else 's']
    else duration,

  // Replace each [[name]] in `text` by parts[name]; every marker must be filled.
  fill(text, parts)::
    local out = std.foldl(
      function(acc, key)
        local marker = '[[' + key + ']]';
        if !$.contains(acc, marker) then error 'unused part ' + key
        else std.strReplace(acc, marker, parts[key]),
      std.objectFields(parts),
      text
    );
    if $.contains(out, '[[') then error 'unfilled marker in ' + out else out,

  local selectorOf(labels) = '{' + std.join(',', ['%s=%%q' % name for name in labels]) + '}',
  local argsOf(labels) = std.join(' ', ['$labels.' + name for name in labels]),

  // A Go template that runs `query` for this alert's series and prints the first value.
  // `query` holds `SEL` where the label matchers go; each label in `labels` is matched to the
  // alert's own value (printf %q quotes and escapes it as a PromQL string). `suffix` follows
  // the value when there is one; `default` stands alone when the query returns nothing.
  lookup(query, labels, pipe, default=null, suffix='')::
    '{{ with printf "' + std.strReplace(query, 'SEL', selectorOf(labels)) + '" ' + argsOf(labels)
    + ' | query }}{{ . | first | ' + pipe + ' }}' + suffix
    + (if default != null then '{{ else }}' + default else '') + '{{ end }}',

  // A template printing `yes` when `query` (with SEL) returns a series for the alert's labels.
  exists(query, labels, yes, no)::
    '{{ if printf "' + std.strReplace(query, 'SEL', selectorOf(labels)) + '" ' + argsOf(labels)
    + ' | query }}' + yes + '{{ else }}' + no + '{{ end }}',

  tsOf(metric, labels, default):: self.lookup(metric + 'SEL', labels, 'value | humanizeTimestamp', default),
  countOf(query, labels, default):: self.lookup(query, labels, 'value | printf "%.0f"', default),

  selectorOf:: selectorOf,
  argsOf:: argsOf,
}
