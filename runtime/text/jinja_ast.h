// Syntax tree of a parsed Jinja template: expressions and statements, each
// with the line and column of its first token for error messages. Built by
// the parser (jinja_parser.h), read-only afterwards, walked by the
// interpreter (jinja_eval.h).
#ifndef SPIKESERVE_RUNTIME_TEXT_JINJA_AST_H_
#define SPIKESERVE_RUNTIME_TEXT_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/text/jinja_value.h"

namespace spikeserve::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,   // value
    kName,      // name
    kList,      // items
    kTuple,     // items
    kDict,      // items: key, value, key, value, ...
    kGetAttr,   // items[0].name
    kGetItem,   // items[0][items[1]]
    kSlice,     // items[0][items[1]:items[2]:items[3]] (null = omitted)
    kCall,      // items[0](items[1:], keywords)
    kFilter,    // items[0]|name(items[1:], keywords); items[0] null in
                // a filter block (the body is the input)
    kTest,      // items[0] is [not] name(items[1:], keywords)
    kNot,       // not items[0]
    kNeg,       // -items[0]
    kPos,       // +items[0]
    kBinary,    // items[0] op items[1]: + - * / // % ** ~ and or
    kCompare,   // items[0] ops[0] items[1] ops[1] items[2] ...
    kCondExpr,  // items[0] if items[1] else items[2] (null: undefined)
  };
  Kind kind;
  int line = 0;
  int column = 0;
  std::string name;              // kName, kGetAttr, kFilter, kTest; op
  std::vector<std::string> ops;  // kCompare: == != < <= > >= in notin
  bool negated = false;          // kTest: "is not"
  JinjaValue value;              // kLiteral
  std::vector<ExprPtr> items;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches (cond, body)...; else_body
    kFor,          // for targets in expr [if cond]: body; else_body
    kSet,          // set targets = expr; or set ns.attr = expr
    kSetBlock,     // {% set x %}body{% endset %} (filter in expr, if any)
    kMacro,        // macro name(params) body
    kFilterBlock,  // {% filter f %}body{% endfilter %}; expr is the filter
    kBreak,
    kContinue,
  };
  Kind kind;
  int line = 0;
  int column = 0;
  std::string text;  // kText; kMacro: name
  ExprPtr expr;      // kOutput, kFor (iterable), kSet, kSetBlock, filters
  ExprPtr cond;      // kFor: the optional "if" filter
  // kFor: loop variables; kSet: assigned names; kMacro: parameters.
  std::vector<std::string> targets;
  std::string attribute;          // kSet/kSetBlock: ns.attribute assignment
  std::vector<ExprPtr> defaults;  // kMacro: default per parameter (or null)
  std::vector<std::pair<ExprPtr, Body>> branches;  // kIf
  Body body;
  Body else_body;
};

}  // namespace spikeserve::jinja

#endif  // SPIKESERVE_RUNTIME_TEXT_JINJA_AST_H_
