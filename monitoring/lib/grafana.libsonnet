// Small builders for the Grafana dashboard JSON (no grafonnet: Debian's jsonnet alone renders
// the mixin). Field names follow Grafana's dashboard schema (grafana/schema/, checked in tests).
{
  DS:: { type: 'prometheus', uid: '${datasource}' },
  GREEN:: 'green',
  ORANGE:: 'orange',
  RED:: 'red',
  BLUE:: 'blue',
  DAYS:: 'suffix: days',

  // One line of PromQL: the JSON stays readable and Grafana's editor shows it as written.
  oneLine(expr)::
    std.join(' ', std.filter(function(s) s != '',
                             std.split(std.strReplace(std.strReplace(expr, '\n', ' '), '\t', ' '), ' '))),

  target(expr, ref='A', legend='', instant=false, table=false):: {
    datasource: $.DS,
    expr: $.oneLine(expr),
    refId: ref,
    legendFormat: if legend == '' then '__auto' else legend,
    instant: instant || table,
    range: !(instant || table),
    [if table then 'format']: 'table',
  },

  // Absolute thresholds; `vars` maps a step index to a variable the step follows (Grafana 13
  // `valueExpr`; older versions use the numeric `value`, the variable's default).
  steps(pairs, vars={}):: {
    mode: 'absolute',
    steps: [
      { color: pairs[i][0], value: pairs[i][1] }
      + (if std.objectHas(vars, std.toString(i)) then { valueExpr: vars[std.toString(i)] } else {})
      for i in std.range(0, std.length(pairs) - 1)
    ],
  },

  // Red up to `critical` days left (and past the date), orange up to `warning`.
  daysLeftSteps(warning, critical, vars={}):: self.steps([[$.RED, null], [$.ORANGE, critical], [$.GREEN, warning]], vars),
  daysAgoSteps(warning, critical):: self.steps([[$.GREEN, null], [$.ORANGE, warning], [$.RED, critical]]),

  // Value mappings: [[value, text, color], ...] in display order.
  mapping(values):: [{
    type: 'value',
    options: {
      [values[i][0]]: { text: values[i][1], color: values[i][2], index: i }
      for i in std.range(0, std.length(values) - 1)
    },
  }],

  override(name, props):: {
    matcher: { id: 'byName', options: name },
    properties: [{ id: p[0], value: p[1] } for p in props],
  },

  panel(kind, title, description, targets, unit, thresholds=null, mappings=[], overrides=[],
        options={}, custom=null, transformations=[], colorMode='thresholds', defaults={}):: {
    type: kind,
    title: title,
    description: description,
    datasource: $.DS,
    targets: targets,
    fieldConfig: {
      defaults: {
        unit: unit,
        thresholds: if thresholds == null then $.steps([[$.GREEN, null]]) else thresholds,
        mappings: mappings,
        color: { mode: colorMode },
        [if custom != null then 'custom']: custom,
      } + defaults,
      overrides: overrides,
    },
    options: options,
    [if transformations != [] then 'transformations']: transformations,
  },

  reduceLast:: { calcs: ['lastNotNull'], fields: '', values: false },

  stat(title, description, expr, thresholds, unit='none')::
    self.panel('stat', title, description, [self.target(expr, instant=true)], unit,
               thresholds=thresholds,
               options={
                 colorMode: 'background',
                 graphMode: 'none',
                 justifyMode: 'center',
                 textMode: 'value',
                 reduceOptions: $.reduceLast,
               },
               defaults={ decimals: 0 }),

  timeseries(title, description, targets, unit, thresholds=null, stack=false,
             showThresholds=false, defaults={})::
    self.panel('timeseries', title, description, targets, unit, thresholds=thresholds,
               custom={
                 drawStyle: 'line',
                 lineWidth: 1,
                 fillOpacity: if stack then 10 else 0,
                 showPoints: 'never',
                 spanNulls: false,
                 stacking: { mode: if stack then 'normal' else 'none', group: 'A' },
                 thresholdsStyle: { mode: if showThresholds then 'dashed' else 'off' },
               },
               options={
                 legend: { displayMode: 'table', placement: 'right', showLegend: true, calcs: ['lastNotNull'] },
                 tooltip: { mode: 'multi', sort: 'desc' },
               },
               colorMode='palette-classic', defaults=defaults),

  stateTimeline(title, description, expr, legend, valueMappings)::
    self.panel('state-timeline', title, description, [self.target(expr, legend=legend)], 'none',
               thresholds=self.steps([[$.RED, null], [$.GREEN, 1]]), mappings=valueMappings,
               custom={ fillOpacity: 80, lineWidth: 0 },
               options={
                 showValue: 'never',
                 mergeValues: true,
                 rowHeight: 0.8,
                 legend: { displayMode: 'list', placement: 'bottom', showLegend: false },
                 tooltip: { mode: 'single', sort: 'none' },
               }),

  bargauge(title, description, targets, unit, thresholds, defaults={})::
    self.panel('bargauge', title, description, targets, unit, thresholds=thresholds,
               defaults=defaults,
               options={
                 orientation: 'horizontal',
                 displayMode: 'basic',
                 showUnfilled: true,
                 valueMode: 'color',
                 namePlacement: 'left',
                 reduceOptions: $.reduceLast,
               }),

  table(title, description, targets, unit, overrides, organize, sortBy=null, merge=true, thresholds=null)::
    self.panel('table', title, description, targets, unit, thresholds=thresholds, overrides=overrides,
               options={
                 showHeader: true,
                 cellHeight: 'sm',
                 footer: { show: false, reducer: ['sum'], fields: '' },
                 [if sortBy != null then 'sortBy']: [{ displayName: sortBy, desc: false }],
               },
               transformations=(if merge then [{ id: 'merge', options: {} }] else [])
                               + [{ id: 'organize', options: organize }],
               custom={ align: 'auto', cellOptions: { type: 'auto' }, filterable: false }),

  organize(rename, hide, order):: {
    excludeByName: { [name]: true for name in hide },
    indexByName: { [order[i]]: i for i in std.range(0, std.length(order) - 1) },
    renameByName: rename,
  },

  colored(cell='color-text'):: { type: cell },

  row(title):: { row: title },
  place(panel, w, h):: { panel: panel, w: w, h: h },

  // Places rows and panels left to right, top to bottom on Grafana's 24-column grid and
  // numbers them (ids from 1, rows included).
  layout(items)::
    local step(state, item) =
      local newline = if state.x > 0 then { x: 0, y: state.y + state.rowHeight, rowHeight: 0 }
      else { x: 0, y: state.y, rowHeight: 0 };
      local id = std.length(state.panels) + 1;
      if std.objectHas(item, 'row') then
        local at = newline;
        state + at + {
          y: at.y + 1,
          panels: state.panels + [{
            type: 'row',
            title: item.row,
            id: id,
            collapsed: false,
            panels: [],
            gridPos: { h: 1, w: 24, x: 0, y: at.y },
          }],
        }
      else
        local at = if state.x + item.w > 24 then newline else state;
        state + {
          x: at.x + item.w,
          y: at.y,
          rowHeight: std.max(at.rowHeight, item.h),
          panels: state.panels + [item.panel + {
            id: id,
            gridPos: { h: item.h, w: item.w, x: at.x, y: at.y },
          }],
        };
    std.foldl(step, items, { x: 0, y: 0, rowHeight: 0, panels: [] }).panels,
}
