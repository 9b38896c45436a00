//! The CEL `validations` of a CertificatePolicy: compiling a rule, and judging a request with
//! it (`self` = the request, `cr` = `{namespace, name}` of the Certificate). Pure; no Kubernetes.
//!
//! The interpreter is the `cel` crate with Kubernetes' function library (`kube-cel`), limited to
//! the function groups named in Cargo.toml. `cel` 0.13 has no cost or step limit and no
//! cancellation, and a rule's cost is not bounded by its length: `['x'].map(a, a + a)` chained a
//! few dozen times doubles a string each time, and `self.dnsNames.all(n, self.dnsNames.exists(m,
//! ...))` is quadratic in a list the Certificate's author chooses. So before each evaluation
//! [`Rule::evaluate`] bounds, from the rule's syntax tree and the actual request, the work and
//! the largest value the rule can produce, and denies without evaluating when either exceeds its
//! limit (SPEC: a rule that "exceeds its cost limit denies"). The bound is coarse and always
//! above the real cost; it is not Kubernetes' cost model, only a ceiling on this interpreter.
//!
//! Three more hazards of `cel` 0.13 are kept out: struct literals (`Foo{a: 1}`) panic in the
//! interpreter, so they do not compile; functions outside the modelled set do not compile (the
//! bound must know what each function can produce); and parsing and evaluating recurse once per
//! nesting level with large frames (a stack overflow aborts the process, it cannot be caught), so
//! both run on a short-lived thread with a large stack, which also turns any other panic into a
//! denial.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::KubeCelExt;
use kube_cel::cel;
use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use serde_json::Value as Json;

/// Longest rule accepted, in bytes; the CertificatePolicy CRD should cap `rule` at the same.
pub const MAX_RULE_BYTES: usize = 2048;

/// Most work one evaluation may need, in the units of [`Extent`] (about a byte copied or compared;
/// each visited syntax node counts [`NODE_COST`]). In this interpreter 10^8 units are roughly
/// 0.1 s of one core.
pub const MAX_COST: u64 = 100_000_000;

/// Largest value (string, list or map, counted as [`Extent::size`]) an evaluation may build.
pub const MAX_VALUE_UNITS: u64 = 4_000_000;

/// What visiting one syntax node costs, in units; the interpreter spends about as long on a node
/// as on copying a few dozen bytes.
const NODE_COST: u64 = 20;

/// Stack of the thread that parses or evaluates. Debug builds need tens of KiB per nesting
/// level; rules are at most [`MAX_RULE_BYTES`] long, so this leaves a wide margin. Pages are only
/// committed when touched.
const CEL_STACK_BYTES: usize = 64 << 20;

/// Longest interpreter message kept: they quote values, which may be whole lists of the request.
const MAX_MESSAGE_CHARS: usize = 300;

/// A compiled `validations[].rule`.
#[derive(Clone)]
pub struct Rule {
    source: String,
    program: Arc<cel::Program>,
}

impl Rule {
    /// Parses `rule`; the error names the rule and what does not parse or is not supported.
    pub fn compile(rule: &str) -> Result<Rule, String> {
        if rule.len() > MAX_RULE_BYTES {
            return Err(format!(
                "CEL rule is {} bytes long; the limit is {MAX_RULE_BYTES}",
                rule.len()
            ));
        }
        // Checking walks the syntax tree recursively, so it runs on the large stack as well.
        let program = on_cel_thread(|| {
            let program = cel::Program::compile(rule)
                .map_err(|e| format!("does not parse: {}", e.to_string().trim()))?;
            check_supported(&program.expression().expr)?;
            Ok(program)
        })
        .and_then(|checked| checked)
        .map_err(|why: String| format!("CEL rule {rule:?} {why}"))?;
        Ok(Rule {
            source: rule.to_owned(),
            program: Arc::new(program),
        })
    }

    /// Evaluates with `self` = `request` and `cr` = {"namespace": .., "name": ..}.
    /// Ok(true) allows; Ok(false) denies; Err(why) also denies (error or non-bool result).
    /// `why` does not repeat the rule; the caller names it.
    pub fn evaluate(&self, request: &serde_json::Value, namespace: &str, name: &str) -> Result<bool, String> {
        let cr = serde_json::json!({ "namespace": namespace, "name": name });
        let expr = &self.program.expression().expr;
        on_cel_thread(|| {
            let bound = Estimator::bound(expr, request, &cr);
            if bound.cost > MAX_COST {
                return Err(format!(
                    "exceeds its cost limit: for this request it may need {} units, the limit is \
                     {MAX_COST}",
                    units(bound.cost)
                ));
            }
            if bound.largest > MAX_VALUE_UNITS {
                return Err(format!(
                    "exceeds its size limit: for this request it may build a value of {} units, the limit \
                     is {MAX_VALUE_UNITS}",
                    units(bound.largest)
                ));
            }
            let mut context = cel::Context::default();
            context.register_all();
            context
                .add_variable("self", request)
                .map_err(|e| format!("the request cannot be given to CEL: {e}"))?;
            context
                .add_variable("cr", &cr)
                .map_err(|e| format!("cr cannot be given to CEL: {e}"))?;
            match self.program.execute(&context) {
                Ok(cel::Value::Bool(allowed)) => Ok(allowed),
                Ok(other) => Err(format!(
                    "returned {} instead of a bool",
                    shorten(&format!("{other:?}"))
                )),
                Err(e) => Err(format!("evaluation failed: {}", shorten(&e.to_string()))),
            }
        })?
    }

    /// The rule as written in the policy.
    pub fn source(&self) -> &str {
        &self.source
    }
}

// Not derived: the syntax tree's Debug recurses as deep as the rule nests, on the caller's stack.
impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Runs `work` on a thread with a large stack and waits for it; a panic becomes an error.
fn on_cel_thread<T: Send>(work: impl FnOnce() -> T + Send) -> Result<T, String> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel".to_owned())
            .stack_size(CEL_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| format!("could not start a thread to run CEL: {e}"))?
            .join()
            .map_err(|_| "the CEL interpreter failed (panicked) on this rule".to_owned())
    })
}

/// A bound for a message; a saturated one is no number anyone should read.
fn units(bound: u64) -> String {
    if bound == u64::MAX {
        format!("more than {}", u64::MAX)
    } else {
        bound.to_string()
    }
}

fn shorten(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message.to_owned(),
    }
}

/// How the bound treats a function's result and cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FunctionKind {
    /// A bool, number, duration, timestamp, IP or CIDR; costs the size of its operands.
    Scalar,
    /// A bool or number, costing the product of its first two operands' sizes (searches, regex
    /// matches, set tests).
    ScalarQuadratic,
    /// At most as large as its largest operand (case, trim, substring, min, orValue...).
    Preserving,
    /// A string or list at most about twice its operands (split, quote, bytes).
    Linear,
    /// Like `Linear`, costing the product of the first two operands' sizes (regex find).
    LinearQuadratic,
    /// `string(x)`: a number's text can be a few hundred characters long.
    Stringify,
    Replace,
    Join,
}

/// The functions a rule may call: core CEL and the kube-cel groups enabled in Cargo.toml. Any
/// other name does not compile, so that the bound never meets a function it cannot size
/// (`lists.range(n)`, `format` with `%.Nf`, which test builds also link through kube's `cel`).
fn function_kind(name: &str) -> Option<FunctionKind> {
    use FunctionKind::*;
    Some(match name {
        "size"
        | "int"
        | "uint"
        | "double"
        | "duration"
        | "timestamp"
        | "getFullYear"
        | "getMonth"
        | "getDayOfYear"
        | "getDayOfMonth"
        | "getDate"
        | "getDayOfWeek"
        | "getHours"
        | "getMinutes"
        | "getSeconds"
        | "getMilliseconds"
        | "hasValue"
        | "optional.none"
        | "ip"
        | "isIP"
        | "ip.isCanonical"
        | "family"
        | "isLoopback"
        | "isUnspecified"
        | "isLinkLocalMulticast"
        | "isLinkLocalUnicast"
        | "isGlobalUnicast"
        | "isIPv4"
        | "isIPv6"
        | "cidr"
        | "isCIDR"
        | "containsIP"
        | "containsCIDR"
        | "prefixLength"
        | "masked"
        | "isCIDRv4"
        | "isCIDRv6" => Scalar,
        "contains" | "startsWith" | "endsWith" | "indexOf" | "lastIndexOf" | "matches" | "sets.contains"
        | "sets.equivalent" | "sets.intersects" => ScalarQuadratic,
        "lowerAscii" | "upperAscii" | "trim" | "substring" | "charAt" | "reverse" | "value" | "orValue"
        | "or" | "optional.of" | "max" | "min" => Preserving,
        "bytes" | "split" | "strings.quote" => Linear,
        "find" | "findAll" => LinearQuadratic,
        "string" => Stringify,
        "replace" => Replace,
        "join" => Join,
        _ => return None,
    })
}

/// The name a call resolves to: `sets.contains(a, b)` parses as `contains` on the identifier
/// `sets`, and the interpreter tries the qualified name first.
fn call_name(call: &cel::common::ast::CallExpr) -> String {
    if let Some(Expr::Ident(prefix)) = call.target.as_deref().map(|target| &target.expr) {
        let qualified = format!("{prefix}.{}", call.func_name);
        if function_kind(&qualified).is_some() {
            return qualified;
        }
    }
    call.func_name.clone()
}

fn is_operator(name: &str) -> bool {
    use operators::*;
    [
        CONDITIONAL,
        LOGICAL_AND,
        LOGICAL_OR,
        LOGICAL_NOT,
        SUBSTRACT,
        ADD,
        MULTIPLY,
        DIVIDE,
        MODULO,
        EQUALS,
        NOT_EQUALS,
        GREATER_EQUALS,
        LESS_EQUALS,
        GREATER,
        LESS,
        NEGATE,
        INDEX,
        OPT_INDEX,
        OPT_SELECT,
        NOT_STRICTLY_FALSE,
        IN,
    ]
    .contains(&name)
}

/// Refuses what the interpreter would panic on, and functions the bound does not model.
fn check_supported(expr: &Expr) -> Result<(), String> {
    match expr {
        Expr::Unspecified => Err("has an empty expression".to_owned()),
        Expr::Struct(s) => Err(format!(
            "message literals ({}{{...}}) are not supported",
            s.type_name
        )),
        Expr::Literal(_) | Expr::Ident(_) => Ok(()),
        Expr::Select(select) => check_supported(&select.operand.expr),
        Expr::List(list) => list.elements.iter().try_for_each(|e| check_supported(&e.expr)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(entry) => {
                check_supported(&entry.key.expr)?;
                check_supported(&entry.value.expr)
            }
            EntryExpr::StructField(_) => Err("message literals are not supported".to_owned()),
        }),
        Expr::Comprehension(c) => [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result]
            .into_iter()
            .try_for_each(|e| check_supported(&e.expr)),
        Expr::Call(call) => {
            let name = call_name(call);
            if !is_operator(&name) && function_kind(&name).is_none() {
                let written = match call.target.as_deref().map(|target| &target.expr) {
                    Some(Expr::Ident(prefix)) => format!("{prefix}.{name}"),
                    _ => name,
                };
                return Err(format!("function {written}() is not available in policy rules"));
            }
            call.target
                .iter()
                .map(|target| &**target)
                .chain(&call.args)
                .try_for_each(|e| check_supported(&e.expr))
        }
    }
}

/// Upper bounds on a value, in units: a byte of a string, or an element or entry of a list or map
/// plus the units of what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Extent {
    /// Units of the whole value.
    size: u64,
    /// Elements, entries or bytes: how often a comprehension over it iterates.
    count: u64,
    /// Units of its largest element or entry.
    item: u64,
}

impl Extent {
    const SCALAR: Extent = Extent {
        size: 1,
        count: 0,
        item: 0,
    };

    fn text(bytes: usize) -> Extent {
        let bytes = bytes as u64;
        Extent {
            size: bytes,
            count: bytes,
            item: 1,
        }
    }

    /// Anything taken out of this value: an element, a field, a character.
    fn element(self) -> Extent {
        Extent {
            size: self.item,
            count: self.item,
            item: self.item,
        }
    }

    /// A string or list of at most `size` units.
    fn of_size(size: u64) -> Extent {
        Extent {
            size,
            count: size,
            item: size,
        }
    }

    fn max(self, other: Extent) -> Extent {
        Extent {
            size: self.size.max(other.size),
            count: self.count.max(other.count),
            item: self.item.max(other.item),
        }
    }
}

/// A value as far as the bound knows it: part of the actual request, or only its extent.
#[derive(Clone, Copy, Debug)]
enum Shape<'a> {
    Json(&'a Json),
    Bound(Extent),
}

#[derive(Clone, Copy, Debug)]
struct Estimate<'a> {
    shape: Shape<'a>,
    cost: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Bound {
    cost: u64,
    largest: u64,
}

/// Walks a rule once, with the request in hand, to bound its cost and its largest value.
struct Estimator<'a> {
    /// Variables in scope, innermost last.
    scope: Vec<(&'a str, Shape<'a>)>,
    extents: HashMap<*const Json, Extent>,
    largest: u64,
}

impl<'a> Estimator<'a> {
    fn bound(expr: &'a Expr, request: &'a Json, cr: &'a Json) -> Bound {
        let mut estimator = Estimator {
            scope: vec![("self", Shape::Json(request)), ("cr", Shape::Json(cr))],
            extents: HashMap::new(),
            largest: 0,
        };
        // Handing the request to the interpreter converts all of it.
        let setup = estimator
            .json_extent(request)
            .size
            .saturating_add(estimator.json_extent(cr).size);
        let estimate = estimator.walk(expr);
        Bound {
            cost: setup.saturating_add(estimate.cost),
            largest: estimator.largest,
        }
    }

    fn json_extent(&mut self, value: &Json) -> Extent {
        let key: *const Json = value;
        if let Some(extent) = self.extents.get(&key) {
            return *extent;
        }
        let extent = match value {
            Json::Null | Json::Bool(_) | Json::Number(_) => Extent::SCALAR,
            Json::String(text) => Extent::text(text.len()),
            Json::Array(items) => items.iter().fold(
                Extent {
                    size: items.len() as u64,
                    count: items.len() as u64,
                    item: 0,
                },
                |sum, item| {
                    let item = self.json_extent(item);
                    Extent {
                        size: sum.size.saturating_add(item.size),
                        count: sum.count,
                        item: sum.item.max(item.size),
                    }
                },
            ),
            Json::Object(fields) => fields.iter().fold(
                Extent {
                    size: fields.len() as u64,
                    count: fields.len() as u64,
                    item: 0,
                },
                |sum, (key, field)| {
                    let field = self.json_extent(field);
                    let entry = (key.len() as u64).max(field.size);
                    Extent {
                        size: sum.size.saturating_add(key.len() as u64 + field.size),
                        count: sum.count,
                        item: sum.item.max(entry),
                    }
                },
            ),
        };
        self.extents.insert(key, extent);
        extent
    }

    fn extent(&mut self, shape: Shape<'_>) -> Extent {
        match shape {
            Shape::Json(value) => self.json_extent(value),
            Shape::Bound(extent) => extent,
        }
    }

    fn produced(&mut self, extent: Extent, cost: u64) -> Estimate<'a> {
        self.largest = self.largest.max(extent.size);
        Estimate {
            shape: Shape::Bound(extent),
            cost,
        }
    }

    fn walk(&mut self, expr: &'a Expr) -> Estimate<'a> {
        match expr {
            Expr::Literal(LiteralValue::String(text)) => {
                self.produced(Extent::text(text.inner().len()), NODE_COST)
            }
            Expr::Literal(LiteralValue::Bytes(bytes)) => {
                self.produced(Extent::text(bytes.inner().len()), NODE_COST)
            }
            Expr::Literal(_) | Expr::Unspecified | Expr::Struct(_) => {
                self.produced(Extent::SCALAR, NODE_COST)
            }
            Expr::Ident(name) => {
                let shape = self
                    .scope
                    .iter()
                    .rev()
                    .find(|(variable, _)| variable == name)
                    .map_or(Shape::Bound(Extent::SCALAR), |(_, shape)| *shape);
                Estimate {
                    shape,
                    cost: NODE_COST,
                }
            }
            Expr::Select(select) => {
                let operand = self.walk(&select.operand.expr);
                let cost = operand.cost.saturating_add(NODE_COST);
                if select.test {
                    return self.produced(Extent::SCALAR, cost);
                }
                let shape = match operand.shape {
                    Shape::Json(Json::Object(fields)) => fields
                        .get(&select.field)
                        .map_or(Shape::Bound(Extent::SCALAR), Shape::Json),
                    Shape::Json(_) => Shape::Bound(Extent::SCALAR),
                    Shape::Bound(extent) => Shape::Bound(extent.element()),
                };
                // The interpreter copies the selected value out of its parent.
                let size = self.extent(shape).size;
                Estimate {
                    shape,
                    cost: cost.saturating_add(size),
                }
            }
            Expr::List(list) => {
                let mut extent = Extent {
                    size: list.elements.len() as u64,
                    count: list.elements.len() as u64,
                    item: 0,
                };
                let mut cost = NODE_COST;
                for element in &list.elements {
                    let estimate = self.walk(&element.expr);
                    let size = self.extent(estimate.shape).size;
                    cost = cost.saturating_add(estimate.cost);
                    extent.size = extent.size.saturating_add(size);
                    extent.item = extent.item.max(size);
                }
                self.produced(extent, cost.saturating_add(extent.size))
            }
            Expr::Map(map) => {
                let mut extent = Extent {
                    size: map.entries.len() as u64,
                    count: map.entries.len() as u64,
                    item: 0,
                };
                let mut cost = NODE_COST;
                for entry in &map.entries {
                    let parts: Vec<&'a IdedExpr> = match &entry.expr {
                        EntryExpr::MapEntry(entry) => vec![&entry.key, &entry.value],
                        EntryExpr::StructField(field) => vec![&field.value],
                    };
                    let mut entry_size = 0u64;
                    for part in parts {
                        let estimate = self.walk(&part.expr);
                        cost = cost.saturating_add(estimate.cost);
                        entry_size = entry_size.saturating_add(self.extent(estimate.shape).size);
                    }
                    extent.size = extent.size.saturating_add(entry_size);
                    extent.item = extent.item.max(entry_size);
                }
                self.produced(extent, cost.saturating_add(extent.size))
            }
            Expr::Comprehension(c) => self.walk_comprehension(c),
            Expr::Call(call) => self.walk_call(call),
        }
    }

    /// A macro (`all`, `exists`, `exists_one`, `map`, `filter`). The accumulator is only ever
    /// an operand of `+`, `&&`, `||` or `?:` in the step the parser generates (users cannot name
    /// `@result`), so one walk with an empty accumulator gives what each iteration adds, and
    /// each iteration may in addition copy the whole accumulator (the interpreter does).
    fn walk_comprehension(&mut self, c: &'a cel::common::ast::ComprehensionExpr) -> Estimate<'a> {
        let range = self.walk(&c.iter_range.expr);
        let range_extent = self.extent(range.shape);
        let iterations = range_extent.count;
        let init = self.walk(&c.accu_init.expr);
        let init_extent = self.extent(init.shape);

        let depth = self.scope.len();
        let element = Shape::Bound(range_extent.element());
        self.scope.push((c.iter_var.as_str(), element));
        if let Some(second) = &c.iter_var2 {
            self.scope.push((second.as_str(), element));
        }
        self.scope
            .push((c.accu_var.as_str(), Shape::Bound(Extent::default())));
        let step = self.walk(&c.loop_step.expr);
        let step_extent = self.extent(step.shape);
        let condition = self.walk(&c.loop_cond.expr);
        self.scope.pop();

        let accumulated = Extent {
            size: init_extent
                .size
                .saturating_add(iterations.saturating_mul(step_extent.size)),
            count: init_extent
                .count
                .saturating_add(iterations.saturating_mul(step_extent.count)),
            item: init_extent.item.max(step_extent.item),
        };
        self.largest = self.largest.max(accumulated.size);
        self.scope.push((c.accu_var.as_str(), Shape::Bound(accumulated)));
        let result = self.walk(&c.result.expr);
        self.scope.truncate(depth);

        let per_iteration = step
            .cost
            .saturating_add(condition.cost)
            .saturating_add(accumulated.size);
        Estimate {
            shape: result.shape,
            cost: range
                .cost
                // Each element is copied into the loop variable: the range's size in all.
                .saturating_add(range_extent.size)
                .saturating_add(init.cost)
                .saturating_add(iterations.saturating_mul(per_iteration))
                .saturating_add(result.cost)
                .saturating_add(NODE_COST),
        }
    }

    fn walk_call(&mut self, call: &'a cel::common::ast::CallExpr) -> Estimate<'a> {
        let name = call_name(call);
        let operands: Vec<(Extent, u64, Shape<'a>)> = call
            .target
            .iter()
            .map(|target| &**target)
            .chain(&call.args)
            .map(|operand| {
                let estimate = self.walk(&operand.expr);
                (self.extent(estimate.shape), estimate.cost, estimate.shape)
            })
            .collect();
        let sizes = operands
            .iter()
            .map(|(extent, _, _)| extent.size)
            .fold(0, u64::saturating_add);
        let costs = operands
            .iter()
            .map(|(_, cost, _)| *cost)
            .fold(NODE_COST, u64::saturating_add);
        let extent_of = |index: usize| {
            operands
                .get(index)
                .map_or(Extent::SCALAR, |(extent, _, _)| *extent)
        };
        let product = extent_of(0).size.saturating_mul(extent_of(1).size.max(1));
        // Function operands are copied in; what is built is paid for once more.
        let (result, work) = match name.as_str() {
            operators::ADD => {
                let (a, b) = (extent_of(0), extent_of(1));
                let sum = Extent {
                    size: a.size.saturating_add(b.size),
                    count: a.count.saturating_add(b.count),
                    item: a.item.max(b.item),
                };
                (sum, sum.size)
            }
            operators::INDEX | operators::OPT_INDEX | operators::OPT_SELECT => {
                let element = extent_of(0).element();
                (element, element.size)
            }
            operators::CONDITIONAL => (extent_of(1).max(extent_of(2)), 0),
            operators::EQUALS
            | operators::NOT_EQUALS
            | operators::LESS
            | operators::LESS_EQUALS
            | operators::GREATER
            | operators::GREATER_EQUALS => (Extent::SCALAR, sizes),
            operators::IN => (
                Extent::SCALAR,
                sizes.saturating_add(extent_of(0).size.saturating_mul(extent_of(1).count)),
            ),
            _ if is_operator(&name) => (Extent::SCALAR, 0),
            _ => {
                let linear = Extent::of_size(sizes.saturating_mul(2).saturating_add(2));
                match function_kind(&name) {
                    Some(FunctionKind::Scalar) => (Extent::SCALAR, sizes),
                    Some(FunctionKind::ScalarQuadratic) => (Extent::SCALAR, sizes.saturating_add(product)),
                    Some(FunctionKind::Preserving) => {
                        let largest = operands
                            .iter()
                            .fold(Extent::default(), |largest, (extent, _, _)| largest.max(*extent));
                        (largest, sizes.saturating_add(largest.size))
                    }
                    Some(FunctionKind::Linear) => (linear, sizes.saturating_add(linear.size)),
                    Some(FunctionKind::LinearQuadratic) => {
                        (linear, sizes.saturating_add(product).saturating_add(linear.size))
                    }
                    Some(FunctionKind::Stringify) => {
                        let text = Extent::of_size(linear.size.saturating_add(400));
                        (text, sizes.saturating_add(text.size))
                    }
                    Some(FunctionKind::Replace) => {
                        // Every gap between characters may receive the replacement.
                        let (text, with) = (extent_of(0).size, extent_of(2).size);
                        let out = Extent::of_size(
                            text.saturating_add(1)
                                .saturating_mul(with.saturating_add(1))
                                .saturating_add(text),
                        );
                        (out, sizes.saturating_add(product).saturating_add(out.size))
                    }
                    Some(FunctionKind::Join) => {
                        // Elements that are not strings are written in a debug form.
                        let (list, separator) = (extent_of(0), extent_of(1));
                        let out = Extent::of_size(
                            list.size
                                .saturating_add(list.count.saturating_mul(separator.size))
                                .saturating_add(1)
                                .saturating_mul(32),
                        );
                        (out, sizes.saturating_add(out.size))
                    }
                    // Not compiled (`check_supported`); sized generously in case.
                    None => {
                        let out = Extent::of_size(sizes.saturating_add(1).saturating_mul(32));
                        (out, sizes.saturating_add(out.size))
                    }
                }
            }
        };
        self.produced(result, costs.saturating_add(work))
    }
}

#[cfg(test)]
#[path = "cel_tests.rs"]
mod tests;
