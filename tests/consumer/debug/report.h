// The consumer's own debug/report.h: a name alloy also has (alloy/debug/report.h).
// If alloy's headers included "debug/report.h", they would get this file.
#pragma once

#include <string>

namespace consumer {

inline std::string report_title() { return "consumer report"; }

}  // namespace consumer

// A macro alloy's report.h does not define: the test checks it is this file.
#define CONSUMER_OWN_DEBUG_REPORT_H 1
