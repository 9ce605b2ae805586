// ObjectPool is a class template; everything lives in object_pool.h. This
// file keeps the one-header-one-source layout of allocators/ and checks that
// the header compiles on its own.
#include "alloy/allocators/object_pool.h"

namespace alloy {
template class ObjectPool<int>;
}  // namespace alloy
