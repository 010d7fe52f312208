# The Python example of uWSGI's signal framework docs, unchanged but for print().
import uwsgi


def hello_signal(num):
    print("i am the signal %d" % num)


def hello_signal2(num):
    print("Hi, i am the signal %d" % num)


# define 2 signal table items (30 and 22)
uwsgi.register_signal(30, "worker", hello_signal)
uwsgi.register_signal(22, "workers", hello_signal2)
