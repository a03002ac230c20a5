// A small fork-join thread pool for the CPU kernels. The calling thread takes part in
// the work. Decoding one token runs a few hundred parallel regions, so workers spin
// briefly between regions (microsecond wake-up) before falling back to sleeping.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ignis {

class ThreadPool {
 public:
  // n_threads counts the caller; 0 means "number of hardware threads".
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Runs fn(task, thread) for task in [0, n_tasks), tasks handed out dynamically.
  // Blocks until all are done. Exceptions from tasks are rethrown here (the first one).
  void run(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

  // Splits [0, n) into chunks of at least `grain` items and runs fn(begin, end) on each.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void worker_loop(int thread);
  void work(int thread);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> next_task_{0};
  std::atomic<int> active_{0};
  int64_t n_tasks_ = 0;
  const std::function<void(int64_t, int)>* fn_ = nullptr;
  std::mutex err_mu_;
  std::exception_ptr error_;
};

// Number of threads to use by default: physical parallelism available to this process.
int default_thread_count();

}  // namespace ignis
