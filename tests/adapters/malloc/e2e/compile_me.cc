// Compiled by g++ in the malloc adapter's end-to-end test, with and without
// LD_PRELOAD=liballoy_malloc.so; the generated code must be identical. Uses
// templates and the standard library so the compiler allocates a lot.
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <unordered_map>
#include <vector>

template <int N>
struct Fib {
  static constexpr long value = Fib<N - 1>::value + Fib<N - 2>::value;
};
template <>
struct Fib<0> {
  static constexpr long value = 0;
};
template <>
struct Fib<1> {
  static constexpr long value = 1;
};

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
struct Square : Shape {
  explicit Square(double s) : side(s) {}
  double area() const override { return side * side; }
  double side;
};

int main() {
  std::map<std::string, std::vector<int>> groups;
  for (int i = 0; i < 1000; ++i) groups[std::to_string(i % 17)].push_back(i);
  std::unordered_map<int, std::string> names;
  for (auto& [k, v] : groups) names[static_cast<int>(v.size())] += k;
  std::vector<std::unique_ptr<Shape>> shapes;
  for (int i = 1; i <= 10; ++i) shapes.push_back(std::make_unique<Square>(i));
  double total = 0;
  for (auto& s : shapes) total += s->area();
  std::vector<int> v(100);
  std::iota(v.begin(), v.end(), 0);
  std::reverse(v.begin(), v.end());
  std::printf("%zu %zu %.0f %d %ld\n", groups.size(), names.size(), total, v[0],
              Fib<40>::value);
  return 0;
}
