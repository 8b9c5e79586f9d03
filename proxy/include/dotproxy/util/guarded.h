#pragma once
// Guarded<T>: a value that can only be reached through a lock. Unlocked access does not compile.

#include <mutex>
#include <utility>

namespace dotproxy {

template <class T, class Mutex = std::mutex>
class Guarded {
 public:
  template <class... Args>
  explicit Guarded(Args&&... args) : value_(std::forward<Args>(args)...) {}

  class Locked {
   public:
    Locked(T& v, Mutex& m) : lock_(m), value_(v) {}
    T* operator->() { return &value_; }
    T& operator*() { return value_; }

   private:
    std::unique_lock<Mutex> lock_;
    T& value_;
  };

  Locked lock() { return Locked(value_, mutex_); }

 private:
  Mutex mutex_;
  T value_;
};

}  // namespace dotproxy
